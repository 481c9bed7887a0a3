"""Real short trainings through `betavae-train`: files, TensorBoard, checkpoints, resume."""

import io
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import TINY_RUN, run_cli, scalars, tensorboard_run
from PIL import Image
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from betavae.lifecycle.commands import shell_word
from betavae.training.image_logging import ImageGridLogger, seconds_left
from betavae.training.module import VAEModule

pytestmark = pytest.mark.slow

EPOCHS = 3


def _single_run_dir(cwd: Path) -> Path:
    runs = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _session(events: EventAccumulator) -> plugin_data_pb2.SessionStartInfo:
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info


def _picture(events: EventAccumulator, tag: str) -> np.ndarray:
    """The last picture of an image tag, as (H, W) pixels: grey, as the sprites are."""
    width, height, png = events.Tensors(tag)[-1].tensor_proto.string_val
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.mode == "L"
        pixels = np.asarray(picture)
    assert pixels.shape == (int(height), int(width))
    return pixels


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def trained(tiny_run: Path) -> Path:
    """The session's short run: TINY_RUN, 3 epochs."""
    return tiny_run


def test_a_run_writes_its_files_into_its_own_directory(trained):
    for name in ("config.yaml", "metrics.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (trained / name).is_file(), name
    assert list(trained.glob("events.out.tfevents.*"))  # TensorBoard names the run by its directory
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


def test_training_lowers_val_elbo_and_logs_every_scalar_with_its_description(trained):
    events = tensorboard_run(trained)
    metrics = _metrics(trained)
    tags = set(events.Tags()["tensors"])
    val_elbo = [value for _, value in scalars(events, "val/elbo")]

    expected = {f"{s}/{m}" for s in ("train", "val") for m in ("loss", "recon", "kl", "elbo")}
    assert expected <= tags
    # Not as curves: the epoch, the constant β and learning rate, the test split's ELBO terms.
    # The test metrics (MIG by default) are one point at the last step, for HPARAMS to show.
    assert not {"epoch", "train/beta", "train/lr"} & tags
    assert {tag for tag in tags if tag.startswith("test/")} == {"test/mig"}
    last_point = (metrics["global_step"], pytest.approx(metrics["test/mig"]))
    assert scalars(events, "test/mig") == [last_point]
    for tag in expected:
        assert events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
        assert "." in events.SummaryMetadata(tag).summary_description, tag
    # TINY_RUN has 8 training batches per epoch and leaves log_every_n_steps unset: a point
    # after every batch, each the mean since the previous one.
    assert [step for step, _ in scalars(events, "train/loss")] == list(
        range(metrics["global_step"])
    )
    train = {m: [v for _, v in scalars(events, f"train/{m}")] for m in ("elbo", "recon", "kl")}
    assert train["elbo"] == pytest.approx(
        [r + k for r, k in zip(train["recon"], train["kl"], strict=True)]
    )
    assert len(val_elbo) == EPOCHS
    assert val_elbo[-1] < val_elbo[0] - 10
    assert val_elbo[-1] == pytest.approx(metrics["val/elbo"], rel=1e-5)


def test_a_short_runs_pictures_are_logged_once_at_the_step_of_its_last_validation(trained):
    events = tensorboard_run(trained)
    val_steps = [step for step, _ in scalars(events, "val/elbo")]

    # By default as often as a small share of the run's time allows; this run ends seconds
    # after its first validation, so its first pictures are its last.
    for tag in ("val/reconstructions", "val/samples", "val/traversal"):
        assert [event.step for event in events.Tensors(tag)] == [val_steps[-1]]
        assert events.SummaryMetadata(tag).plugin_data.plugin_name == "images"
        assert events.SummaryMetadata(tag).summary_description


@pytest.mark.parametrize(("steps_in_all", "due"), [(1000, True), (60, False)])
def test_the_first_validation_draws_pictures_unless_the_run_ends_within_seconds(steps_in_all, due):
    """50 steps done in 5 s: 950 more take 95 s (pictures now), 10 more take 1 s (at the end)."""
    pictures = ImageGridLogger(every_n_epochs=None, num_reconstructions=4, num_samples=4)
    trainer = SimpleNamespace(
        current_epoch=0, max_epochs=20, global_step=50, estimated_stepping_batches=steps_in_all
    )
    pictures._started_at, pictures._start_step = time.monotonic() - 5.0, 0

    assert seconds_left(trainer, pictures._started_at, 0) == pytest.approx(
        (steps_in_all - 50) / 10, rel=0.05
    )
    assert pictures._due(trainer) is due
    endless = SimpleNamespace(**{**vars(trainer), "estimated_stepping_batches": float("inf")})
    assert seconds_left(endless, pictures._started_at, 0) == float("inf")


def test_pictures_every_n_epochs_are_logged_at_those_validations(tmp_path, data_dir):
    every = ["callbacks.images.every_n_epochs=1", "callbacks.traversals.every_n_epochs=2"]
    result = run_cli([*TINY_RUN, "trainer.max_epochs=3", *every], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr
    events = tensorboard_run(_single_run_dir(tmp_path))
    val_steps = [step for step, _ in scalars(events, "val/elbo")]

    for tag in ("val/reconstructions", "val/samples"):
        assert [event.step for event in events.Tensors(tag)] == val_steps
    # Every second epoch, and after the last epoch of any run.
    assert [event.step for event in events.Tensors("val/traversal")] == val_steps[1:]


def test_pictures_are_enlarged_separated_by_light_lines_and_labelled(trained):
    events = tensorboard_run(trained)
    # 32-pixel sprites enlarged to 64, 4-pixel light grey lines around each, and a label column
    # ("input", "reconstruction"; a traversal's "z<d>  KL <nats>") with dark text on the left.
    pairs = _picture(events, "val/reconstructions")
    traversal = _picture(events, "val/traversal")

    assert pairs.shape[0] == 2 * 68 + 4
    assert traversal.shape[0] == 4 * 68 + 4  # one row per latent dimension
    for picture, cells in ((pairs, 8 * 68 + 4), (traversal, 10 * 68 + 4)):
        assert (picture[:, -1] == 204).all() and (picture[-1] == 204).all()  # separators
        labels = picture[:, : picture.shape[1] - cells]
        assert labels.shape[1] > 0 and labels.min() < 64 and np.median(labels) == 204


def test_hparams_entry_holds_the_run_config_with_its_types_and_status(trained):
    events = tensorboard_run(trained)
    hparams = _session(events).hparams
    end = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/session_end_info").plugin_data.content
    ).session_end_info

    assert hparams["model.latent_dim"].number_value == 4
    assert hparams["model.network"].string_value == "mlp"
    assert hparams["model.learn_gaussian_std"].WhichOneof("kind") == "bool_value"
    assert hparams["model.hidden_dims"].string_value == "[64]"
    assert hparams["data.num_examples"].number_value == 600
    assert hparams["trainer.max_epochs"].number_value == EPOCHS
    assert hparams["trainer.gradient_clip_val"].string_value == "null"
    assert not any(key.startswith(("paths.", "logger.", "callbacks.", "resume")) for key in hparams)
    assert end.status == api_pb2.STATUS_SUCCESS
    # A single run leaves the columns to TensorBoard, which derives them from every run's
    # session under --logdir (a sweep writes its own, tests/test_sweeps.py).
    assert "_hparams_/experiment" not in events.Tags()["tensors"]


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
    event_files = set(run_dir.glob("events.out.tfevents.*"))
    # What a killed attempt leaves when the kill lands after its points were flushed and before
    # its checkpoint was: a point past the step the run resumes from.
    stale_step = before["global_step"] + before["global_step"] // 2 - 1
    _write_points(min(event_files).with_name(min(event_files).name + ".killed"), stale_step)

    result = run_cli([f"resume={run_dir}", "trainer.max_epochs=3"], cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    after = _metrics(run_dir)
    assert after["epochs"] == 3
    assert after["global_step"] == before["global_step"] // 2 * 3
    assert _single_run_dir(tmp_path) == run_dir
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert set(run_dir.glob("events.out.tfevents.*")) > event_files  # the same run, continued
    events = tensorboard_run(run_dir)
    val_points = scalars(events, "val/elbo")
    val_steps = [step for step, _ in val_points]
    assert len(val_steps) == 3
    assert val_steps == sorted(val_steps)
    assert val_steps[-1] == stale_step  # drawn once, by the resumed run, not beside the stale one
    assert _STALE_VALUE not in [value for _, value in val_points]
    assert _session(events).hparams["trainer.max_epochs"].number_value == 3
    # Adam's per-parameter step count continued from the checkpoint, not from zero.
    last = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert last["optimizer_states"][0]["state"][0]["step"] == after["global_step"]


_STALE_VALUE = 1e6


def _write_points(path: Path, step: int) -> None:
    """An event file holding one val/elbo point at `step`."""
    event = Event(step=step, wall_time=time.time(), summary=scalar_pb("val/elbo", _STALE_VALUE))
    with path.open("wb") as file:
        RecordWriter(file).write(event.SerializeToString())


def test_resume_refuses_other_changes_and_leaves_the_run_untouched(trained, tmp_path, data_dir):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}

    result = run_cli([f"resume={run_dir}", "model.beta=4"], cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    prefix, command = line.split(", start a new run from its checkpoint: ")
    assert prefix == (
        "betavae-train: error: model.beta=4: a resumed run keeps its config (trainer.max_epochs "
        "may be raised, the devices changed); to change it"
    )
    # The run's own settings, then the changes (tests/test_printed_commands.py pastes it).
    assert command == " ".join(
        [
            "betavae-train",
            *(shell_word(o) for o in TINY_RUN),
            "ckpt_path=run/checkpoints/last.ckpt",
            "model.beta=4",
            f"trainer.max_epochs={2 * EPOCHS}",
        ]
    )
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
