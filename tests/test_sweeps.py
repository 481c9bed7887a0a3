"""A real 2x2 multirun through `betavae-train -m`, and `betavae-report` on it."""

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import TINY_RUN, run_cli
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

from betavae.apps.report import main as report_main

pytestmark = pytest.mark.slow

RUN_FILES = ("config.yaml", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt")
JOBS = {
    "0_model.beta=1,model.latent_dim=2": (2, 1.0),
    "1_model.beta=4,model.latent_dim=2": (2, 4.0),
    "2_model.beta=1,model.latent_dim=4": (4, 1.0),
    "3_model.beta=4,model.latent_dim=4": (4, 4.0),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One finished 2x2 sweep, shared read-only (tests that change it work on a copy)."""
    cwd = tmp_path_factory.mktemp("sweep")
    args = ["-m", *TINY_RUN, "trainer.max_epochs=2", "model.latent_dim=2,4", "model.beta=1,4"]
    result = run_cli([*args, "hydra.sweep.dir=sweep"], cwd=cwd, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return cwd / "sweep"


def _metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def _report(sweep_dir: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """`betavae-report <sweep_dir>` in this process: exit status, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["betavae-report", str(sweep_dir)])
    try:
        report_main()
        status = 0
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_each_job_has_a_complete_run_directory_named_by_its_swept_values(sweep):
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted(JOBS)
    assert sorted(p.name for p in sweep.parent.iterdir()) == ["sweep"]
    for name, (latent_dim, beta) in JOBS.items():
        job = sweep / name
        for file in (
            "config.yaml",
            "metrics.json",
            "checkpoints/best.ckpt",
            "checkpoints/last.ckpt",
        ):
            assert (job / file).is_file(), (name, file)
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
        assert f"latent_dim: {latent_dim}\n" in (job / "config.yaml").read_text()
        assert f"beta: {beta}\n" in (job / "config.yaml").read_text()
        assert _metrics(job)["epochs"] == 2


def test_one_tensorboard_logdir_compares_every_job_in_hparams(sweep):
    runs = EventMultiplexer().AddRunsFromDirectory(str(sweep))
    runs.Reload()

    assert sorted(runs.Runs()) == sorted(f"{name}/tensorboard" for name in JOBS)
    for name, (latent_dim, beta) in JOBS.items():
        events = runs.GetAccumulator(f"{name}/tensorboard")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        ).session_start_info
        assert start.hparams["model/latent_dim"].number_value == latent_dim
        assert start.hparams["model/beta"].number_value == beta
        best = _metrics(sweep / name)["best_val_elbo"]
        assert events.Scalars("hp/val_elbo")[-1].value == pytest.approx(best)


def test_report_writes_one_row_per_job_a_markdown_table_and_a_plot(sweep, monkeypatch, capsys):
    status, out, err = _report(sweep, monkeypatch, capsys)

    assert status == 0, err
    with (sweep / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["job"] for row in rows] == list(JOBS)
    for row, (latent_dim, beta) in zip(rows, JOBS.values(), strict=True):
        metrics = _metrics(sweep / row["job"])
        assert (int(row["model.latent_dim"]), float(row["model.beta"])) == (latent_dim, beta)
        assert float(row["test_elbo"]) == pytest.approx(metrics["test/elbo"])
        assert float(row["val_kl"]) == pytest.approx(metrics["val/kl"])
        assert float(row["test_mig"]) == pytest.approx(metrics["test/mig"])
        assert row["best_checkpoint"] == f"{row['job']}/checkpoints/best.ckpt"
        assert row["status"] == "finished"
        assert row["active_units"] == ""  # betavae-eval was not run on these jobs
    markdown = (sweep / "summary.md").read_text()
    assert markdown.count("| finished |") == 4
    assert "![rate and distortion](rate_distortion.png)" in markdown
    assert (sweep / "rate_distortion.png").read_bytes().startswith(b"\x89PNG")
    assert (sweep / "mig_beta.png").read_bytes().startswith(b"\x89PNG")
    assert "| 3_model.beta=4,model.latent_dim=4 | 4" in out
    assert "4 of 4 jobs finished" in out


def test_report_on_a_partly_finished_sweep_lists_the_unfinished_jobs(
    sweep, tmp_path, monkeypatch, capsys
):
    partial = shutil.copytree(sweep, tmp_path / "partial")
    names = list(JOBS)
    (partial / names[2] / "metrics.json").unlink()
    (partial / names[3] / "metrics.json").unlink()
    shutil.rmtree(partial / names[3] / "checkpoints")
    (partial / names[3] / "config.yaml").unlink()  # stopped before its first checkpoint

    status, out, err = _report(partial, monkeypatch, capsys)

    assert status == 0, err
    with (partial / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["status"] for row in rows] == [
        "finished",
        "finished",
        "unfinished (has last.ckpt)",
        "unfinished (no checkpoint)",
    ]
    assert [row["model.latent_dim"] for row in rows] == ["2", "2", "4", "4"]
    assert rows[2]["test_elbo"] == rows[2]["best_checkpoint"] == ""
    assert "2 of 4 jobs finished" in out
    assert (partial / "rate_distortion.png").is_file()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "missing",
            "missing: no such directory; pass a sweep directory, e.g. multirun/<date>/<time>",
        ),
        (
            ".",
            ".: not a sweep directory (no job directories with .hydra/config.yaml); "
            "pass the directory betavae-train -m made, e.g. multirun/<date>/<time>",
        ),
    ],
)
def test_report_on_a_bad_path_is_one_line(tmp_path, monkeypatch, capsys, path, message):
    monkeypatch.chdir(tmp_path)
    status, _, err = _report(Path(path), monkeypatch, capsys)

    assert status == 2
    assert err.strip().splitlines() == [f"betavae-report: error: {message}"]
    assert not list(tmp_path.iterdir())
