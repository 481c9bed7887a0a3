"""What each TensorBoard tag of a run means, in one line: TensorBoard shows it on the tag's card.

Losses are nats per example (summed over pixels and latent dimensions, averaged over examples).
"""

from collections.abc import Iterable

from betavae.evaluation.disentanglement_names import DISENTANGLEMENT_SCORES, DRAWN_SCORES, test_key

_QUANTITIES = {
    "elbo": "Negative ELBO at β = 1 (recon + KL), nats per example, a bound on −log p(x) that "
    "compares runs of any β (M2's: −U(x), summed over the classes); lower is better.",
    "recon": "Reconstruction term −E_q[log p(x|z)], nats per example; lower is better.",
    "kl": "KL(q(z|x) ‖ N(0, I)) summed over latent dimensions, nats per example: what the code "
    "holds about x; β trades it against reconstruction (lower = more compressed). M2's adds "
    "the class's KL(q(y|x) ‖ p(y)).",
    "loss": "The objective optimised (β-VAE: recon + β·KL; or the capacity, β-TC, FactorVAE, "
    "DIP-VAE or M2 objective, model.objective), nats per example; lower is better at the same "
    "settings. FactorVAE's discriminator_loss is not in it; M2's is elbo + "
    "model.m2_alpha·cross_entropy.",
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
    "accuracy": "M2's classifier q(y|x): the fraction of images whose most probable class is "
    "their label (training: the labelled batch; validation: every image); higher is better.",
    "cross_entropy": "M2's classifier q(y|x): −log q(label|x), nats per image (training: the "
    "labelled batch, the term model.m2_alpha weighs; validation: every image); lower is better.",
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
    "model generates (M2: one row per class, each column one z drawn as every class).",
    "val/traversal": "One validation image's latent traversal: each row sweeps one dimension "
    "(labelled with its KL, nats per example) across ±callbacks.traversals.span with the others "
    "at the image's μ; rows by KL, most first. A row that changes nothing is an unused "
    "dimension.",
}

# The curves HPARAMS lists per run, with their last values; the first five are shown. Where
# the data has generative factors also val/mig and the test metrics, for M2 val/accuracy (see
# hparams_metrics).
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


def hparams_metrics(
    factors: bool, test_metrics: Iterable[str], accuracy: bool = False
) -> tuple[str, ...]:
    """HPARAMS' metrics: after val/elbo an M2 run's val/accuracy, and on data with generative
    factors the validation MIG and the test metrics, in the order of `DISENTANGLEMENT_SCORES`."""
    first = ["val/accuracy"] if accuracy else []
    if factors:
        first += ["val/mig", *(test_key(n) for n in DISENTANGLEMENT_SCORES if n in test_metrics)]
    return (HPARAMS_METRICS[0], *first, *HPARAMS_METRICS[1:])


def describe(tag: str) -> str:
    """The one-line description of a scalar or image tag; empty for a tag this list lacks."""
    if tag in _FIXED:
        return _FIXED[tag]
    stage, _, quantity = tag.partition("/")
    if stage not in _STAGES or quantity not in _QUANTITIES:
        return ""
    return f"{_QUANTITIES[quantity]} {_STAGES[stage]}"
