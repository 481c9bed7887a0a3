"""Each objective and the weight that sets it, so that a sweep over several objectives is read
against each one's own weight: β for the β-VAE and β-TCVAE, γ for FactorVAE, λ_od for the
DIP-VAEs, the capacity target C for Burgess et al.'s objective."""

from dataclasses import dataclass

from betavae.lifecycle.records import Job


@dataclass(frozen=True)
class Objective:
    name: str
    """As the papers name it: β-VAE, FactorVAE, ..."""
    weight: str
    """The symbol of the weight that sets it: β, γ, λ_od, C."""
    weight_key: str
    """That weight's config key."""


OBJECTIVES = {
    "beta": Objective("β-VAE", "β", "model.beta"),
    "beta_tc": Objective("β-TCVAE", "β", "model.beta"),
    "factor_vae": Objective("FactorVAE", "γ", "model.factor_vae_gamma"),
    "dip_vae_i": Objective("DIP-VAE-I", "λ_od", "model.dip_lambda_od"),
    "dip_vae_ii": Objective("DIP-VAE-II", "λ_od", "model.dip_lambda_od"),
    "capacity": Objective("capacity", "C", "model.capacity_max"),
}
WEIGHT_KEYS = tuple(dict.fromkeys(objective.weight_key for objective in OBJECTIVES.values()))


def objective_of(job: Job) -> str:
    # Runs from before the objective could be chosen were all β-VAEs.
    return job.config.get("model.objective", "beta")


def weight_of(job: Job) -> float:
    """The value of the weight that sets the job's objective."""
    return job.config[OBJECTIVES[objective_of(job)].weight_key]


def shown_weight(job: Job) -> str:
    """`γ=10`: the job's weight by its symbol."""
    return f"{OBJECTIVES[objective_of(job)].weight}={weight_of(job):g}"
