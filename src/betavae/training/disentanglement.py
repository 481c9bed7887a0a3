"""MIG of the trained model on the test split, at the end of every training on data with factors.

Cheap by design (one encoding pass over the test split, no importance sampling), so every run
on sprites reports how disentangled its code is without a separate `betavae-eval`.
"""

from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from betavae.evaluation.collect import run_split
from betavae.evaluation.metrics import mig_metrics
from betavae.vae import VAE

MIG = "test/mig"
MIG_PER_FACTOR = "test/mig_per_factor"
# Examples per forward pass: the test split is small, and this bounds memory on any device.
_BATCH_SIZE = 500


def test_mig(trainer: pl.Trainer, vae: VAE, datamodule: pl.LightningDataModule) -> dict[str, Any]:
    """{"test/mig": MIG, "test/mig_per_factor": {factor: gap}} of `vae` on the test split, also
    logged as TensorBoard scalars `test/mig` and `test/mig_gap/<factor>`; {} for data without
    factors. Every DDP rank measures the whole split, so all return the same numbers."""
    factor_names = getattr(datamodule, "factor_names", None)
    if factor_names is None:
        return {}
    # A plain loader over the whole split: the data module's own loaders are sharded per rank.
    results = run_split(vae, DataLoader(datamodule.test_set, batch_size=_BATCH_SIZE))
    measured = mig_metrics(results.mu, results.targets, factor_names)
    gaps = measured["mig_per_factor"]
    scalars = {MIG: measured["mig"]}
    scalars |= {f"test/mig_gap/{name}": gap for name, gap in gaps.items() if gap is not None}
    for logger in trainer.loggers:
        logger.log_metrics(scalars, step=trainer.global_step)
    return {MIG: measured["mig"], MIG_PER_FACTOR: gaps}
