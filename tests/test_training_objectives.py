"""Short trainings with the capacity, β-TC, FactorVAE and DIP-VAE objectives: what they log
and save, how they resume, and the MIG every training on sprites ends with."""

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_RUN, run_cli, scalars, tensorboard_run

pytestmark = pytest.mark.slow


def _train(cwd: Path, data_dir: Path, *overrides: str) -> Path:
    result = run_cli([*TINY_RUN, *overrides], cwd=cwd, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (p for p in (cwd / "outputs").glob("*/*") if p.is_dir())
    return run_dir


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = tensorboard_run(run_dir)
    tags = events.Tags()["tensors"]
    is_scalar = [events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars" for tag in tags]
    return {
        tag: scalars(events, tag) for tag, scalar in zip(tags, is_scalar, strict=True) if scalar
    }


# Beside the test split's MIG, two metrics on examples drawn from the factors (seconds each).
TEST_METRICS = ("sap", "modularity")


@pytest.fixture(scope="module")
def beta_tc_training(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, str]:
    """A β-TC run measuring three test metrics: its directory and what it printed."""
    cwd = tmp_path_factory.mktemp("beta_tc")
    objective = ["model.objective=beta_tc", "model.beta=6", "trainer.max_epochs=2"]
    metrics = f"evaluation.test_metrics=[mig,{','.join(TEST_METRICS)}]"
    result = run_cli([*TINY_RUN, *objective, metrics], cwd=cwd, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (p for p in (cwd / "outputs").glob("*/*") if p.is_dir())
    return run_dir, result.stdout


@pytest.fixture(scope="module")
def beta_tc_run(beta_tc_training: tuple[Path, str]) -> Path:
    return beta_tc_training[0]


def test_beta_tc_logs_its_three_kl_terms_at_the_logging_steps(beta_tc_run):
    scalars = _scalars(beta_tc_run)
    steps = [step for step, _ in scalars["train/loss"]]
    assert steps == list(range(16))  # 8 batches an epoch, a point after each (the derived interval)
    for name in ("mi", "tc", "dim_kl"):
        assert [step for step, _ in scalars[f"train/{name}"]] == steps
        assert f"val/{name}" in scalars
    assert "train/beta" not in scalars  # a flat setting: HPARAMS has it
    # The three terms split the KL: their sum is a one-sample estimate of it.
    for (_, mi), (_, tc), (_, dim_kl), (_, kl) in zip(
        scalars["train/mi"],
        scalars["train/tc"],
        scalars["train/dim_kl"],
        scalars["train/kl"],
        strict=True,
    ):
        assert mi + tc + dim_kl == pytest.approx(kl, abs=0.5)


def test_capacity_follows_its_schedule_across_a_resume(tmp_path, data_dir):
    capacity = ["model.objective=capacity", "model.capacity_max=8", "model.capacity_steps=20"]
    run_dir = _train(tmp_path, data_dir, *capacity, "trainer.max_epochs=2")

    result = run_cli([f"resume={run_dir}", "trainer.max_epochs=4"], cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    logged = _scalars(run_dir)["train/capacity"]
    assert [step for step, _ in logged] == list(range(32))
    for step, value in logged:  # logged after step `step + 1`, at the value C had during it
        assert value == pytest.approx(8 * min(1.0, step / 20))
    assert "train/beta" not in _scalars(run_dir)


def test_training_ends_with_the_best_checkpoints_test_metrics_and_logs_val_mig_every_epoch(
    beta_tc_training, data_dir
):
    run_dir, printed = beta_tc_training
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result = run_cli(
        [f"run={run_dir}", "k=1", f"metrics=[{','.join(TEST_METRICS)}]"],
        cwd=run_dir,
        data_dir=data_dir,
        script="betavae-eval",
    )

    assert result.returncode == 0, result.stderr
    evaluated = json.loads(
        (run_dir / "eval/metrics-test-k=1-metrics=sap,modularity.json").read_text()
    )
    # The test split's MIG and each factor's gap, as betavae-eval measures them.
    assert metrics["test/mig"] == pytest.approx(evaluated["mig"])
    for factor, gap in evaluated["mig_per_factor"].items():
        assert metrics[f"test/mig_gap/{factor}"] == pytest.approx(gap)
    # The others from examples drawn afresh, the very draws of betavae-eval (seed 0, quick).
    assert evaluated["disentanglement_samples"] == {
        "samples": "quick",
        "num_train": 2000,
        "num_test": 1000,
    }
    for name in TEST_METRICS:
        assert metrics[f"test/{name}"] == evaluated["disentanglement"][name]
        assert f"  test {name:15}{metrics[f'test/{name}']:>8.3f}" in printed.splitlines()
        assert f"  {name:30}{metrics[f'test/{name}']:>14.3f}" in result.stdout.splitlines()
    assert "drawn afresh from the factors, 2,000 / 1,000 examples (samples=quick):" in result.stdout
    # In TensorBoard, a curve of the validation split's MIG, at the validation steps, and each
    # test metric once, at the last step: a metric of the run's HPARAMS entry.
    logged = _scalars(run_dir)
    assert [step for step, _ in logged["val/mig"]] == [step for step, _ in logged["val/elbo"]]
    assert all(0 <= value <= 1 for _, value in logged["val/mig"])
    tests = {tag: points for tag, points in logged.items() if tag.startswith("test/")}
    assert tests == {
        f"test/{name}": [(metrics["global_step"], pytest.approx(metrics[f"test/{name}"]))]
        for name in ("mig", *TEST_METRICS)
    }
    description = tensorboard_run(run_dir).SummaryMetadata("test/sap").summary_description
    assert description.startswith("0-1: mean over factors of the gap in accuracy")
    assert "The best checkpoint, once, at the end of training" in description


def test_a_test_split_too_small_for_mig_says_so_instead_of_a_number(tmp_path, data_dir):
    result = run_cli(
        [*TINY_RUN, "data.num_examples=10", "trainer.max_epochs=1"], tmp_path, data_dir
    )

    assert result.returncode == 0, result.stderr
    (metrics_file,) = tmp_path.glob("outputs/*/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert "test/mig" not in metrics
    assert metrics["mig_left_out"] == "1 example; MIG needs at least 40"
    assert "  test MIG                 n/a   (1 example; MIG needs at least 40)" in result.stdout
    assert not {"val/mig", "test/mig"} & set(_scalars(metrics_file.parent))


@pytest.fixture(scope="module")
def factor_vae_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    cwd = tmp_path_factory.mktemp("factor_vae")
    return _train(cwd, data_dir, "model.objective=factor_vae", "trainer.max_epochs=2")


def test_factor_vae_logs_its_tc_and_discriminator_loss_at_the_logging_steps(factor_vae_run):
    logged = _scalars(factor_vae_run)
    steps = [step for step, _ in logged["train/loss"]]
    for name in ("tc", "discriminator_loss"):
        assert [step for step, _ in logged[f"train/{name}"]] == steps
        assert [step for step, _ in logged[f"val/{name}"]] == [s for s, _ in logged["val/elbo"]]
    assert "train/mi" not in logged and "train/beta" not in logged
    # The loss is the VAE's, recon + KL + γ·TC (γ = 10), without the discriminator's.
    for (_, loss), (_, elbo), (_, tc) in zip(
        logged["val/loss"], logged["val/elbo"], logged["val/tc"], strict=True
    ):
        assert loss == pytest.approx(elbo + 10 * tc, abs=1e-3)
    # A cross-entropy of two classes: log 2 for a discriminator that cannot tell them apart.
    assert all(0 < value < 1 for _, value in logged["train/discriminator_loss"])
    events = tensorboard_run(factor_vae_run)
    for tag in ("train/tc", "val/tc", "train/discriminator_loss", "val/discriminator_loss"):
        assert "FactorVAE" in events.SummaryMetadata(tag).summary_description, tag


def test_factor_vae_checkpoint_holds_the_discriminator_and_its_own_adam(factor_vae_run):
    checkpoint = torch.load(
        factor_vae_run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True
    )

    weights = checkpoint["state_dict"]
    assert weights["discriminator.0.weight"].shape == (1000, 4)  # latent 4 in, 1000 units out
    vae_group, critic_group = checkpoint["optimizer_states"][0]["param_groups"]
    assert (vae_group["lr"], vae_group["betas"]) == (1e-3, (0.9, 0.999))
    assert (critic_group["lr"], critic_group["betas"]) == (1e-4, (0.5, 0.9))
    assert len(critic_group["params"]) == 14  # 7 layers' weights and biases
    state = checkpoint["optimizer_states"][0]["state"]
    # The discriminator took an Adam step at every one of the run's 16 steps, as the VAE did.
    assert {state[i]["step"].item() for i in critic_group["params"]} == {16.0}
    assert {state[i]["step"].item() for i in vae_group["params"]} == {16.0}


def test_dip_vae_logs_its_penalty_which_the_loss_adds_to_the_elbo(tmp_path, data_dir):
    run_dir = _train(tmp_path, data_dir, "model.objective=dip_vae_i", "trainer.max_epochs=1")

    logged = _scalars(run_dir)
    assert [step for step, _ in logged["train/dip"]] == [s for s, _ in logged["train/loss"]]
    for (_, loss), (_, elbo), (_, dip) in zip(
        logged["val/loss"], logged["val/elbo"], logged["val/dip"], strict=True
    ):
        assert dip > 0
        assert loss == pytest.approx(elbo + dip, abs=1e-3)
    events = tensorboard_run(run_dir)
    for tag in ("train/dip", "val/dip"):
        assert "DIP-VAE's penalty" in events.SummaryMetadata(tag).summary_description, tag
