"""`betavae-eval labels_per_class=N`: the few-label probes of a trained VAE (M1) beside the
same probes on pixels, in its metrics file, its table and betavae-report; and its refusals."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_RUN, run_cli
from PIL import Image

from betavae.data.base import class_labels
from betavae.data.labelled import labelled_subset
from betavae.evaluation.collect import split_images
from betavae.evaluation.representation import knn_accuracy, linear_probe_accuracy
from betavae.loading import load_run

pytestmark = pytest.mark.slow

FEW_LABELS = "eval/metrics-test-k=1-metrics=mig-labels_per_class=5.json"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Two VAEs of a sweep, each evaluated with 5 labels per class."""
    cwd = tmp_path_factory.mktemp("few_labels")
    args = ["-m", *TINY_RUN, "trainer.max_epochs=1", "model.beta=1,4", "hydra.sweep.dir=sweep"]
    trained = run_cli(args, cwd, data_dir)
    assert trained.returncode == 0, trained.stderr
    for job in sorted((cwd / "sweep").glob("*_model.beta=*")):
        evaluated = run_cli(
            # MIG alone of the disentanglement metrics: the others are test_training_objectives'.
            [f"run='{job}'", "k=1", "labels_per_class=5", "metrics=[mig]"],
            cwd,
            data_dir,
            script="betavae-eval",
        )
        assert evaluated.returncode == 0, evaluated.stderr
        (job / "eval_stdout.txt").write_text(evaluated.stdout)
    return cwd / "sweep"


def test_the_probes_on_mu_stand_beside_the_same_probes_on_pixels(sweep):
    job = sweep / "0_model.beta=1"
    metrics = json.loads((job / FEW_LABELS).read_text())

    assert metrics["labels_per_class"] == 5 and metrics["label_seeds"] == [0, 1, 2]
    # The pixel baseline: each probe fitted on the raw pixels of 5 training sprites per shape.
    run = load_run(str(job))
    data = run.datamodule()
    train = split_images(data.split_dataloader("train")).flatten(1)
    test = split_images(data.split_dataloader("test")).flatten(1)
    train_labels, test_labels = class_labels(data.train_set), class_labels(data.test_set)
    linear, knn = [], []
    for seed in (0, 1, 2):
        chosen = labelled_subset(train_labels, 5, seed)
        fitted = (train[chosen], train_labels[chosen], test, test_labels)
        linear.append(linear_probe_accuracy(*fitted, standardized=False))
        knn.append(knn_accuracy(*fitted, k=5, standardized=False))
    for probe, values in (("linear_probe", linear), ("knn", knn)):
        per_seed = torch.tensor(values, dtype=torch.float64)
        assert metrics[f"few_label_pixels_{probe}_accuracy_mean"] == pytest.approx(per_seed.mean())
        assert metrics[f"few_label_pixels_{probe}_accuracy_sd"] == pytest.approx(per_seed.std())
        assert 0 <= metrics[f"few_label_mu_{probe}_accuracy_mean"] <= 1
    mu, pixels = (metrics[f"few_label_{f}_knn_accuracy_mean"] for f in ("mu", "pixels"))
    printed = (job / "eval_stdout.txt").read_text()
    assert "  shape accuracy from 5 labels per class (3 label seeds; mu: " in printed
    assert f"    5-NN                        {mu:>8.3f} ± " in printed
    assert f"{pixels:>8.3f} ± {metrics['few_label_pixels_knn_accuracy_sd']:.3f}\n" in printed


def test_the_report_shows_each_job_s_few_label_probes(sweep, data_dir):
    result = run_cli([str(sweep)], sweep, data_dir, script="betavae-report")

    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    columns = ("linear_mu@5", "linear_pixels@5", "knn_mu@5", "knn_pixels@5")
    assert all(f" {column} " in header for column in columns)
    rows = {row["job"]: row for row in _csv(sweep / "summary.csv")}
    for job, row in rows.items():
        metrics = json.loads((sweep / job / FEW_LABELS).read_text())
        assert float(row["knn_mu@5"]) == pytest.approx(metrics["few_label_mu_knn_accuracy_mean"])
    # The pixel baseline does not depend on the model.
    assert len({row["linear_pixels@5"] for row in rows.values()}) == 1


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["labels_per_class=0"],
            "labels_per_class=0 is not allowed: null (no few-label probes) or an integer >= 1",
        ),
        (
            ["labels_per_class=150"],
            "labels_per_class=150: class 0 (square) has only 143 examples to choose from; use "
            "at most 143",
        ),
        (
            ["label_seeds=[3]", "labels_per_class=5"],
            "label_seeds=[3] is not allowed: at least two different seeds, e.g. [0,1,2] (a "
            "mean and an sd over them)",
        ),
        (
            [
                "labels_per_class=5",
                "data=image_folder",
                "data.path={folder}",
                "data.channels=1",
                "data.image_size=32",
            ],
            "labels_per_class=5: this data set has no class labels to choose labelled examples "
            "by; use a labelled data set or remove the setting",
        ),
    ],
    ids=["zero", "more-than-a-class-has", "one-seed", "no-labels"],
)
def test_labels_the_data_cannot_give_end_in_one_line_and_write_nothing(
    sweep, tmp_path, data_dir, args, expected
):
    job = sweep / "1_model.beta=4"
    folder = tmp_path / "pictures"  # 20 images, no class subfolders
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((32, 32), 10 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    before = sorted((job / "eval").iterdir())
    command = [f"run='{job}'", *(arg.format(folder=folder) for arg in args)]

    result = run_cli(command, tmp_path, data_dir, script="betavae-eval")

    assert result.returncode == 2
    assert result.stderr.strip() == f"betavae-eval: error: {expected}"
    assert sorted((job / "eval").iterdir()) == before
