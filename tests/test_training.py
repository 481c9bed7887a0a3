"""Real short trainings through `betavae-train`: files, TensorBoard, checkpoints, resume."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import TINY_RUN, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from betavae.training.module import VAEModule

pytestmark = pytest.mark.slow

EPOCHS = 3


def _single_run_dir(cwd: Path) -> Path:
    runs = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    accumulator.Reload()
    return accumulator


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One short run, shared read-only by the tests below (they copy it before changing it)."""
    cwd = tmp_path_factory.mktemp("trained")
    result = run_cli([*TINY_RUN, f"trainer.max_epochs={EPOCHS}"], cwd=cwd, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return _single_run_dir(cwd)


def test_a_run_writes_its_files_into_its_own_directory(trained):
    for name in ("config.yaml", "metrics.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (trained / name).is_file(), name
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in trained.parent.parent.parent.iterdir()) == ["outputs"]


def test_metrics_json_reports_final_val_and_test_metrics(trained):
    metrics = _metrics(trained)

    assert metrics["epochs"] == EPOCHS
    assert Path(metrics["best_checkpoint"]) == (trained / "checkpoints/best.ckpt").resolve()
    for stage in ("val", "test"):
        elbo, recon, kl = (metrics[f"{stage}/{m}"] for m in ("elbo", "recon", "kl"))
        assert elbo == pytest.approx(recon + kl, rel=1e-5)
        assert kl > 0
    assert metrics["best_val_elbo"] <= metrics["val/elbo"]


def test_training_lowers_val_elbo_and_logs_every_scalar(trained):
    events = _events(trained)
    scalars = set(events.Tags()["scalars"])
    val_elbo = [e.value for e in events.Scalars("val/elbo")]

    expected = {f"{s}/{m}" for s in ("val", "test") for m in ("loss", "recon", "kl", "elbo")}
    expected |= {"train/loss", "train/recon", "train/kl", "train/beta"}
    assert expected <= scalars
    # TINY_RUN logs every 2 steps: one point per 2 training batches, their mean.
    logged_steps = [e.step for e in events.Scalars("train/loss")]
    assert logged_steps == list(range(1, _metrics(trained)["global_step"], 2))
    assert len(val_elbo) == EPOCHS
    assert val_elbo[-1] < val_elbo[0] - 10
    assert val_elbo[-1] == pytest.approx(_metrics(trained)["val/elbo"], rel=1e-5)


def test_reconstruction_and_sample_grids_are_logged_every_epoch(trained):
    events = _events(trained)

    for tag in ("val/reconstructions", "val/samples"):
        images = events.Images(tag)
        assert len(images) == EPOCHS
        assert images[-1].encoded_image_string.startswith(b"\x89PNG")
    pairs = events.Images("val/reconstructions")[-1]
    assert pairs.width > pairs.height  # inputs above reconstructions, 8 per row


def test_hparams_tab_holds_the_run_hyperparameters_with_real_final_metrics(trained):
    events = _events(trained)
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    ).session_start_info
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    ).experiment
    metrics = _metrics(trained)

    assert start.hparams["model/latent_dim"].number_value == 4
    assert start.hparams["model/network"].string_value == "mlp"
    assert {m.name.tag for m in experiment.metric_infos} == {"hp/val_elbo", "hp/test_elbo"}
    assert events.Scalars("hp/val_elbo")[-1].value == pytest.approx(metrics["best_val_elbo"])
    assert events.Scalars("hp/test_elbo")[-1].value == pytest.approx(metrics["test/elbo"])


def test_checkpoint_loads_with_plain_lightning_under_weights_only_defaults(trained):
    checkpoint = trained / "checkpoints/best.ckpt"
    torch.load(checkpoint, weights_only=True)  # what torch >= 2.6 does by default

    module = VAEModule.load_from_checkpoint(checkpoint, map_location="cpu")
    images = torch.rand(2, 1, 32, 32)

    assert module.hparams.latent_dim == 4
    assert module.hparams.image_shape == [1, 32, 32]
    assert module.eval()(images).shape == images.shape


def test_resume_continues_the_run_in_place(tmp_path, data_dir):
    first = run_cli([*TINY_RUN, "trainer.max_epochs=2"], cwd=tmp_path, data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    run_dir = _single_run_dir(tmp_path)
    before = _metrics(run_dir)
    event_files = set((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    result = run_cli([f"resume={run_dir}", "trainer.max_epochs=3"], cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    after = _metrics(run_dir)
    assert after["epochs"] == 3
    assert after["global_step"] == before["global_step"] // 2 * 3
    assert _single_run_dir(tmp_path) == run_dir
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert set((run_dir / "tensorboard").glob("events.out.tfevents.*")) > event_files
    val_steps = [e.step for e in _events(run_dir).Scalars("val/elbo")]
    assert len(val_steps) == 3
    assert val_steps == sorted(val_steps)
    # Adam's per-parameter step count continued from the checkpoint, not from zero.
    last = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert last["optimizer_states"][0]["state"][0]["step"] == after["global_step"]


def test_resume_refuses_other_changes_and_leaves_the_run_untouched(trained, tmp_path, data_dir):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}

    result = run_cli([f"resume={run_dir}", "model.beta=4"], cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "betavae-train: error: model.beta=4: a resumed run keeps its config, only "
        "trainer.max_epochs may be raised; to change it, start a new run with "
        f"ckpt_path={run_dir / 'checkpoints/last.ckpt'}"
    ]
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files


def test_ckpt_path_starts_a_new_run_from_the_checkpoint(trained, tmp_path, data_dir):
    checkpoint = trained / "checkpoints/last.ckpt"
    args = [*TINY_RUN, f"ckpt_path={checkpoint}", "trainer.max_epochs=4"]

    result = run_cli(args, cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    new_run = _single_run_dir(tmp_path)
    steps_per_epoch = _metrics(trained)["global_step"] // EPOCHS
    assert _metrics(new_run)["global_step"] == 4 * steps_per_epoch
    assert (new_run / "checkpoints/last.ckpt").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.latent_dim=8", "the checkpoint's model differs: latent_dim=4 (this config: 8)"),
        ("model=conv", "network=mlp (this config: conv)"),
        ("data.image_size=28", "image_shape=[1, 32, 32] (this config: [1, 28, 28])"),
    ],
)
def test_ckpt_path_of_another_architecture_is_refused(
    trained, tmp_path, data_dir, override, message
):
    args = [*TINY_RUN, f"ckpt_path={trained / 'checkpoints/last.ckpt'}", override]

    result = run_cli(args, cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert not any((tmp_path / "outputs").rglob("*"))


def test_a_corrupted_checkpoint_is_refused_with_one_line(tmp_path, data_dir):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")

    result = run_cli([*TINY_RUN, f"ckpt_path={broken}"], cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 2
    assert result.stderr.startswith(f"betavae-train: error: ckpt_path={broken}: not a readable")
    assert len(result.stderr.strip().splitlines()) == 1
