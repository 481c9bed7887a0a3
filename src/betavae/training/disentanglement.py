"""How disentangled a model's code is while it trains and when it is done, on data with
generative factors (sprites, dsprites, shapes3d, mpi3d): the Mutual Information Gap of the
validation split after every epoch (`val/mig`, a curve in TensorBoard and a metric in HPARAMS),
and for the best checkpoint at the end the metrics of `evaluation.test_metrics` (metrics.json,
the summary, HPARAMS, betavae-report): by default only the test split's MIG.

The MIG is cheap by design: μ of each validation batch (one more pass of the encoder over a
split a tenth of the data) or one encoding pass over the test split, and histograms. The other
metrics draw examples afresh from the factors, as `betavae-eval` does, and take seconds (MIG,
SAP, modularity, explicitness) to minutes (DCI, the BetaVAE and FactorVAE scores).
"""

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.utils.data import DataLoader

from betavae.evaluation.collect import run_split
from betavae.evaluation.disentanglement import dimension_factors
from betavae.evaluation.disentanglement_names import DRAWN_SCORES, SAMPLES, test_key
from betavae.evaluation.ground_truth import encoder_mean
from betavae.evaluation.metrics import mig_metrics
from betavae.evaluation.mig_keys import MIG, MIG_GAP, MIG_LEFT_OUT, VAL_MIG
from betavae.vae import VAE

# Examples per forward pass: the test split is small, and this bounds memory on any device.
_BATCH_SIZE = 500


def test_metrics(
    vae: VAE, datamodule: pl.LightningDataModule, names: Sequence[str], samples: str
) -> dict[str, float | str]:
    """`test/<name>` of each of `names` for `vae`: MIG on the test split (`test_mig`), the
    others on `samples` examples drawn afresh from the data's factors, with the draws of
    `betavae-eval seed=0`, so its numbers are the run's. {} for data without factors."""
    if not hasattr(datamodule, "ground_truth"):
        return {}
    measured = test_mig(vae, datamodule) if "mig" in names else {}
    drawn = [name for name in DRAWN_SCORES if name in names]
    if drawn:
        # Imported only here: its scikit-learn models take about 0.3 s to import, which
        # every training process would pay at start-up for scores not asked for by default.
        from betavae.evaluation.disentanglement_scores import disentanglement_scores

        data = datamodule.ground_truth()
        scores = disentanglement_scores(data, encoder_mean(vae), drawn, samples=SAMPLES[samples])
        measured |= {test_key(name): value for name, value in scores.items()}
    return measured


def test_mig(vae: VAE, datamodule: pl.LightningDataModule) -> dict[str, float | str]:
    """{"test/mig": MIG, "test/mig_gap/<factor>": gap, ...} of `vae` on the test split; {} for
    data without factors, and why not where the split cannot measure it. A factor that does not
    vary in the split has no gap. Every DDP rank measures the whole split, so all return the
    same numbers."""
    factor_names = getattr(datamodule, "factor_names", None)
    if factor_names is None:
        return {}
    # A plain loader over the whole split: the data module's own loaders are sharded per rank.
    results = run_split(vae, DataLoader(datamodule.test_set, batch_size=_BATCH_SIZE))
    measured = mig_metrics(results.mu, results.targets, factor_names)
    if MIG_LEFT_OUT in measured:
        return measured
    metrics = {MIG: measured["mig"]}
    gaps = measured["mig_per_factor"].items()
    return metrics | {MIG_GAP + name: gap for name, gap in gaps if gap is not None}


class ValidationMIG(Callback):
    """Logs `val/mig` after every validation epoch, from the μ of the whole validation split
    (gathered across DDP ranks) against its factors, and keeps the factor each dimension follows
    for the traversal's row labels (it runs before the picture loggers)."""

    def __init__(self, factor_names: tuple[str, ...]) -> None:
        self.factor_names = factor_names
        self.dimension_factors: list[str | None] = []
        """The factor each latent dimension followed at the last validation (for pictures)."""
        self._mu: list[Tensor] = []
        self._factors: list[Tensor] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mu, self._factors = [], []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: tuple[Tensor, Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        with torch.no_grad():
            mu, _ = pl_module.vae.encode(batch[0])
        self._mu.append(mu.float())
        self._factors.append(batch[1])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._mu:
            return
        mu, factors = torch.cat(self._mu), torch.cat(self._factors)
        if trainer.world_size > 1:
            mu, factors = (pl_module.all_gather(t).flatten(0, 1) for t in (mu, factors))
        mu, factors = mu.cpu(), factors.cpu()
        measured = mig_metrics(mu, factors, self.factor_names)
        if MIG_LEFT_OUT in measured:  # a validation split of a few examples: no curve
            return
        pl_module.log(VAL_MIG, measured["mig"], sync_dist=True)  # the same on every rank
        self.dimension_factors = dimension_factors(mu, factors, self.factor_names)
