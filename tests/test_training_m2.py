"""M2 (model.objective=m2) trained by betavae-train on sprites with a few labels per class:
what it logs, saves and reports, its one-line refusals, how it resumes, and the commands that
use a trained model on its runs."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_RUN, run_cli, scalars, start_train, tensorboard_run
from PIL import Image
from torch import nn

from betavae.loading import load_run
from betavae.training.m2_module import M2Module

pytestmark = pytest.mark.slow

# 480 training sprites of 3 shapes, 5 labelled per shape: 15 labelled, 465 unlabelled.
M2 = [*TINY_RUN, "model.objective=m2", "data.labels_per_class=5"]


def _train(cwd: Path, data_dir: Path, *overrides: str) -> tuple[Path, str]:
    result = run_cli([*M2, *overrides], cwd=cwd, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (p for p in (cwd / "outputs").glob("*/*") if p.is_dir())
    return run_dir, result.stdout


@pytest.fixture(scope="module")
def m2_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, str]:
    return _train(tmp_path_factory.mktemp("m2"), data_dir, "trainer.max_epochs=2")


def _metrics(run_dir: Path, name: str = "metrics.json") -> dict:
    return json.loads((run_dir / name).read_text())


def test_an_m2_run_says_what_it_trains_and_reports_its_classifier(m2_run):
    run_dir, stdout = m2_run
    metrics = _metrics(run_dir)

    assert (
        "(latent 4, 199,179 parameters, M2, alpha 0.1) on 480 images 1x32x32, 15 of them "
        "labelled (5 per class, label seed 0): 2 epochs of 8 steps" in stdout
    )
    assert 0 <= metrics["test/accuracy"] <= 1 and metrics["test/cross_entropy"] > 0
    # Each epoch's line shows the classifier's validation accuracy beside the ELBO.
    last_epoch = next(line for line in stdout.splitlines() if line.startswith("Epoch 2/2: "))
    assert last_epoch.endswith(
        f"val/elbo {metrics['val/elbo']:.2f}, val/accuracy {metrics['val/accuracy']:.3f}"
    )
    shown = f"  test accuracy          {metrics['test/accuracy']:.3f}   (q(y|x); cross-entropy "
    assert shown in stdout
    for stage in ("val", "test"):
        elbo, recon, kl = (metrics[f"{stage}/{name}"] for name in ("elbo", "recon", "kl"))
        assert elbo == pytest.approx(recon + kl, rel=1e-5)
        expected_loss = elbo + 0.1 * metrics[f"{stage}/cross_entropy"]
        assert metrics[f"{stage}/loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert "test/mig" in metrics  # z's code at the predicted class, against the factors


def test_the_classifier_s_curves_and_the_class_rows_are_in_tensorboard(m2_run):
    run_dir, _ = m2_run
    events = tensorboard_run(run_dir)

    steps = [step for step, _ in scalars(events, "train/loss")]
    val_steps = [step for step, _ in scalars(events, "val/elbo")]
    for name in ("accuracy", "cross_entropy"):
        assert [step for step, _ in scalars(events, f"train/{name}")] == steps
        assert [step for step, _ in scalars(events, f"val/{name}")] == val_steps
        for stage in ("train", "val"):
            description = events.SummaryMetadata(f"{stage}/{name}").summary_description
            assert description.startswith("M2's classifier q(y|x)"), description
    assert all(0 <= value <= 1 for _, value in scalars(events, "val/accuracy"))
    # One row per shape of 8 prior draws, each cell a 32-pixel sprite shown at 64 pixels.
    height = int(events.Tensors("val/samples")[-1].tensor_proto.string_val[1])
    assert height == 3 * (64 + 4) + 4
    layout = events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    assert b"^(train|val)/accuracy$" in layout and b"cross_entropy" in layout


def test_the_model_apps_use_the_m2_run(m2_run, data_dir):
    run_dir, _ = m2_run
    run = load_run(str(run_dir))
    assert isinstance(run.module, M2Module) and run.module.hparams.num_classes == 3

    for args, script in (
        (["k=20", "metrics=[mig]"], "betavae-eval"),  # the other metrics: M1's tests
        (["n=16"], "betavae-sample"),
        ([], "betavae-encode"),
    ):
        result = run_cli([f"run={run_dir}", *args], run_dir, data_dir, script=script)
        assert result.returncode == 0, (script, result.stderr)

    evaluated = _metrics(run_dir, "eval/metrics-test-k=20-metrics=mig.json")
    trained = _metrics(run_dir)
    # The test split's q(y|x) of the best checkpoint, measured twice.
    assert evaluated["classifier_accuracy"] == pytest.approx(trained["test/accuracy"], abs=1e-6)
    assert evaluated["nll_iwae"] <= evaluated["elbo"]  # Σ over classes, 20 draws of z each
    assert evaluated["kl"] == pytest.approx(evaluated["elbo"] - evaluated["recon"], abs=1e-3)
    latents = np.load(run_dir / "latents/test.npz")
    assert latents["q_y"].shape == (60, 3)
    np.testing.assert_allclose(latents["q_y"].sum(1), 1, rtol=1e-5)
    with Image.open(run_dir / "samples/prior-n=16.png") as prior:
        assert prior.height == 3 * (64 + 4) + 4  # a row per shape, 4 draws of z in each


def test_an_m2_checkpoint_cannot_start_a_vae_run(m2_run, tmp_path, data_dir):
    run_dir, _ = m2_run
    checkpoint = run_dir / "checkpoints/last.ckpt"

    result = run_cli(
        [*TINY_RUN, f"ckpt_path={checkpoint}", "trainer.max_epochs=3"], tmp_path, data_dir
    )

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"betavae-train: error: ckpt_path={checkpoint}: the checkpoint holds a model of "
        "objective=m2, which cannot start a run of objective=beta; use a checkpoint of the "
        "same kind"
    )
    assert not (tmp_path / "outputs").exists()


# The M2 settings without the sprites' own keys, for a folder of images.
M2_ON_A_FOLDER = [arg for arg in M2 if not arg.startswith("data.num_examples")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [*M2, "data.labels_per_class=150"],
            "data.labels_per_class=150: class 0 (square) has only 143 examples to choose from; "
            "use at most 143",
        ),
        (
            [*M2_ON_A_FOLDER, "data=image_folder", "data.path={folder}", "data.channels=1"],
            "data.labels_per_class=5: this data set has no class labels to choose labelled "
            "examples by; use a labelled data set or remove the setting",
        ),
    ],
    ids=["more-than-a-class-has", "no-labels"],
)
def test_labels_the_data_cannot_give_end_in_one_line_and_leave_nothing(
    tmp_path, data_dir, args, expected
):
    folder = tmp_path / "pictures"  # 20 images, no class subfolders
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((32, 32), 10 * i, dtype=np.uint8)).save(folder / f"{i}.png")

    result = run_cli([arg.format(folder=folder) for arg in args], tmp_path, data_dir)

    assert result.returncode == 2
    assert result.stderr.strip() == f"betavae-train: error: {expected}"
    assert not (tmp_path / "outputs").exists()


def _last_checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)


def test_a_killed_m2_run_resumes_to_the_weights_of_one_never_stopped(
    fork_server, tmp_path, data_dir
):
    """The labelled batch of each step follows from the step: a run killed mid-epoch and
    resumed ends with the very weights and Adam state of a run never stopped."""
    args = [
        *M2,
        "data.labels_per_class=20",  # 60 labelled, more than a batch: a new batch each step
        "data.batch_size=8",
        "trainer.max_epochs=1",
        "callbacks.checkpoint.every_n_train_steps=5",
        "hydra.run.dir=run",
    ]
    for name in ("straight", "killed"):
        (tmp_path / name).mkdir()
    straight = run_cli(args, tmp_path / "straight", data_dir)
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "killed/run"
    process = start_train(fork_server, args, tmp_path / "killed", data_dir)
    while not (run / "checkpoints/last.ckpt").exists():
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.kill()
    process.communicate()
    killed_at = _last_checkpoint(run)["global_step"]

    resumed = run_cli([f"resume={run}"], tmp_path / "killed", data_dir)

    assert resumed.returncode == 0, resumed.stderr
    expected, got = _last_checkpoint(tmp_path / "straight/run"), _last_checkpoint(run)
    assert killed_at < got["global_step"] == expected["global_step"] == 53  # 420 unlabelled / 8
    for name, weight in expected["state_dict"].items():
        assert torch.equal(got["state_dict"][name], weight), name
    for index, moments in expected["optimizer_states"][0]["state"].items():
        for key, value in moments.items():
            assert torch.equal(got["optimizer_states"][0]["state"][index][key], value)
    assert _metrics(run)["test/accuracy"] == _metrics(tmp_path / "straight/run")["test/accuracy"]


@pytest.mark.parametrize(
    "saved_with",
    [
        {},
        {"m2_shared_convs": False},
        {"m2_shared_convs": True},
        {"m2_shared_convs": True, "m2_head_dims": []},
        {"m2_shared_convs": True, "m2_head_dims": [5]},
    ],
)
def test_a_conv_m2_checkpoint_loads_into_the_networks_it_was_saved_from(tmp_path, saved_with):
    """A checkpoint from before m2_shared_convs or m2_head_dims existed has no such
    hyper-parameter: its classifier had conv layers of its own, or a head as wide as the
    encoder's hidden layers, and must load into such networks again."""
    module = M2Module(
        (1, 16, 16), 3, network="conv", channels=[4, 8], hidden_dims=[8], **saved_with
    )
    checkpoint = tmp_path / "m2.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": "2.5.0",
        },
        checkpoint,
    )

    loaded = M2Module.load_from_checkpoint(checkpoint)

    shared = saved_with.get("m2_shared_convs", False)
    assert (loaded.vae.classifier[0] is loaded.vae.encoder.features) == shared
    head = [layer.out_features for layer in loaded.vae.classifier if isinstance(layer, nn.Linear)]
    assert head == [*saved_with.get("m2_head_dims", [8]), 3]
    for name, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
