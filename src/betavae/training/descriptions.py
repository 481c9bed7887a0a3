"""What each TensorBoard tag of a run means, in one line: TensorBoard shows it on the tag's card.

Losses are nats per example (summed over pixels and latent dimensions, averaged over examples).
"""

from collections.abc import Iterable

from betavae.evaluation.disentanglement_names import DISENTANGLEMENT_SCORES, DRAWN_SCORES, test_key

_QUANTITIES = {
    "elbo": "Negative ELBO at β = 1 (recon + KL), nats per example, a bound on −log p(x) that "
    "compares runs of any β; lower is better.",
    "recon": "Reconstruction term −E_q[log p(x|z)], nats per example; lower is better.",
    "kl": "KL(q(z|x) ‖ N(0, I)) summed over latent dimensions, nats per example: what the code "
    "holds about x; β trades it against reconstruction (lower = more compressed).",
    "loss": "The objective optimised (β-VAE: recon + β·KL; or the capacity, β-TC, FactorVAE or "
    "DIP-VAE objective, model.objective), nats per example; lower is better at the same "
    "settings. FactorVAE's discriminator_loss is not in it.",
    "mi": "β-TC's index-code mutual information I(x; z), the part of the KL that is information "
    "about x, nats per example.",
    "tc": "Total correlation KL(q(z) ‖ Π q(z_j)): how much the latent dimensions depend on each "
    "other, nats per example; lower = more factorised. β-TC estimates it by minibatch sampling, "
    "FactorVAE by its discriminator's log density ratio.",
    "dim_kl": "β-TC's dimension-wise KL Σ_j KL(q(z_j) ‖ p(z_j)), nats per example.",
    "discriminator_loss": "FactorVAE's discriminator's cross-entropy, real codes against codes "
    "with each dimension shuffled across the batch, nats: log 2 ≈ 0.69 when it cannot tell them "
    "apart, and then its TC estimate means little.",
    "dip": "DIP-VAE's penalty λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)², C the batch covariance "
    "of μ (DIP-VAE-I) or of z (DIP-VAE-II): 0 when it is the identity, like the prior's.",
    "mig": "Mutual Information Gap against the true generative factors (shape, scale, "
    "orientation, x, y): 1 when each factor lives in one latent dimension, 0 when it is spread "
    "or absent; higher = more disentangled.",
    **{name: f"{DISENTANGLEMENT_SCORES[name]}." for name in DRAWN_SCORES},
}
_STAGES = {
    "train": "Training batches: the mean over the batches since the previous point.",
    "val": "The whole validation split, after each epoch.",
    "test": "The best checkpoint, once, at the end of training (evaluation.test_metrics): MIG on "
    "the test split, the others on examples drawn afresh from the factors (evaluation.samples).",
}
# Tags with a description of their own: settings that change during training, and pictures.
_FIXED = {
    "train/beta": "β, the KL weight of the objective at this step (it rises to model.beta over "
    "model.beta_warmup_steps); a setting, not a score.",
    "train/lr": "Adam's learning rate at this step (model.scheduler); a setting, not a score.",
    "train/capacity": "C, the KL target of the capacity objective at this step (raised to "
    "model.capacity_max over model.capacity_steps), nats; a setting, not a score.",
    "val/reconstructions": "Validation inputs (top row) and their reconstructions, the "
    "likelihood's mean (bottom row); the same inputs every time: the closer, the better.",
    "val/samples": "Decoded draws from the prior N(0, I), the same draws every time: what the "
    "model generates.",
    "val/traversal": "One validation image's latent traversal: each row sweeps one dimension "
    "(labelled with its KL, nats per example) across ±callbacks.traversals.span with the others "
    "at the image's μ; rows by KL, most first. A row that changes nothing is an unused "
    "dimension.",
}

# The curves HPARAMS lists per run, with their last values; the first five are shown. Where
# the data has generative factors also val/mig and the test metrics (see hparams_metrics).
HPARAMS_METRICS = (
    "val/elbo",
    "val/recon",
    "val/kl",
    "val/loss",
    "train/elbo",
    "train/recon",
    "train/kl",
    "train/loss",
)


def hparams_metrics(factors: bool, test_metrics: Iterable[str]) -> tuple[str, ...]:
    """HPARAMS' metrics: on data with generative factors, the validation MIG and the test
    metrics after val/elbo, in the order of `DISENTANGLEMENT_SCORES`."""
    if not factors:
        return HPARAMS_METRICS
    tests = [test_key(name) for name in DISENTANGLEMENT_SCORES if name in test_metrics]
    return (HPARAMS_METRICS[0], "val/mig", *tests, *HPARAMS_METRICS[1:])


def describe(tag: str) -> str:
    """The one-line description of a scalar or image tag; empty for a tag this list lacks."""
    if tag in _FIXED:
        return _FIXED[tag]
    stage, _, quantity = tag.partition("/")
    if stage not in _STAGES or quantity not in _QUANTITIES:
        return ""
    return f"{_QUANTITIES[quantity]} {_STAGES[stage]}"
