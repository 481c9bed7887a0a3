"""Short trainings with the capacity and β-TC objectives: what they log, resume, and the MIG
every training on sprites ends with."""

import json
from pathlib import Path

import pytest
from helpers import TINY_RUN, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow


def _train(cwd: Path, data_dir: Path, *overrides: str) -> Path:
    result = run_cli([*TINY_RUN, *overrides], cwd=cwd, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (p for p in (cwd / "outputs").glob("*/*") if p.is_dir())
    return run_dir


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.fixture(scope="module")
def beta_tc_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    cwd = tmp_path_factory.mktemp("beta_tc")
    return _train(cwd, data_dir, "model.objective=beta_tc", "model.beta=6", "trainer.max_epochs=2")


def test_beta_tc_logs_its_three_kl_terms_at_the_logging_steps(beta_tc_run):
    scalars = _scalars(beta_tc_run)
    steps = [step for step, _ in scalars["train/loss"]]
    assert steps == list(range(1, 16, 2))  # 8 batches an epoch, logged every 2 steps
    for name in ("mi", "tc", "dim_kl"):
        assert [step for step, _ in scalars[f"train/{name}"]] == steps
        assert f"val/{name}" in scalars
    assert all(value == 6.0 for _, value in scalars["train/beta"])
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
    assert [step for step, _ in logged] == list(range(1, 32, 2))
    for step, value in logged:
        assert value == pytest.approx(8 * min(1.0, step / 20))
    assert "train/beta" not in _scalars(run_dir)


def test_training_ends_with_the_best_checkpoints_test_mig_in_metrics_and_tensorboard(
    beta_tc_run, data_dir
):
    metrics = json.loads((beta_tc_run / "metrics.json").read_text())
    result = run_cli(
        [f"run={beta_tc_run}", "k=1"], cwd=beta_tc_run, data_dir=data_dir, script="betavae-eval"
    )

    assert result.returncode == 0, result.stderr
    evaluated = json.loads((beta_tc_run / "eval/metrics.json").read_text())
    assert metrics["test/mig"] == pytest.approx(evaluated["mig"])
    for factor, gap in evaluated["mig_per_factor"].items():
        assert metrics[f"test/mig_gap/{factor}"] == pytest.approx(gap)
    scalars = _scalars(beta_tc_run)
    assert scalars["test/mig"] == [(metrics["global_step"], pytest.approx(metrics["test/mig"]))]
    gap = metrics["test/mig_gap/pos_x"]
    assert scalars["test/mig_gap/pos_x"][0][1] == pytest.approx(gap)
