"""MIG of the trained model on the test split, at the end of every training on data with factors.

Cheap by design (one encoding pass over the test split, no importance sampling), so every run
on sprites reports how disentangled its code is without a separate `betavae-eval`.
"""

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from betavae.evaluation.collect import run_split
from betavae.evaluation.metrics import mig_metrics
from betavae.vae import VAE

MIG = "test/mig"
# Followed by a factor's name: that factor's gap. Flat numbers like every other test/* metric.
MIG_GAP = "test/mig_gap/"
# Examples per forward pass: the test split is small, and this bounds memory on any device.
_BATCH_SIZE = 500


def test_mig(trainer: pl.Trainer, vae: VAE, datamodule: pl.LightningDataModule) -> dict[str, float]:
    """{"test/mig": MIG, "test/mig_gap/<factor>": gap, ...} of `vae` on the test split, also
    logged under the same names to TensorBoard; {} for data without factors. A factor that
    does not vary in the split has no gap. Every DDP rank measures the whole split, so all
    return the same numbers."""
    factor_names = getattr(datamodule, "factor_names", None)
    if factor_names is None:
        return {}
    # A plain loader over the whole split: the data module's own loaders are sharded per rank.
    results = run_split(vae, DataLoader(datamodule.test_set, batch_size=_BATCH_SIZE))
    measured = mig_metrics(results.mu, results.targets, factor_names)
    metrics = {MIG: measured["mig"]}
    gaps = measured["mig_per_factor"].items()
    metrics |= {MIG_GAP + name: gap for name, gap in gaps if gap is not None}
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
    return metrics


def mig_gaps(metrics: dict[str, float]) -> dict[str, float]:
    """The per-factor gaps of a run's metrics, by factor name, in the order they were written."""
    return {key.removeprefix(MIG_GAP): v for key, v in metrics.items() if key.startswith(MIG_GAP)}
