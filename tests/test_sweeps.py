"""A real 2x2 multirun through `betavae-train -m`, and `betavae-report` on it."""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    TINY_RUN,
    console_script,
    run_cli,
    run_in_a_new_process,
    tensorboard_run,
    with_data_dir,
)
from omegaconf import OmegaConf
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from betavae.apps.report import main as report_main
from betavae.lifecycle.records import planned_jobs

pytestmark = pytest.mark.slow

SWEEP = [
    "-m",
    *TINY_RUN,
    "trainer.max_epochs=2",
    "model.latent_dim=2,4",
    "model.beta=1,4",
    "hydra.sweep.dir=sweep",
]
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
    result = run_cli(SWEEP, cwd=cwd, data_dir=data_dir)
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
        assert list(job.glob("events.out.tfevents.*"))
        assert f"latent_dim: {latent_dim}\n" in (job / "config.yaml").read_text()
        assert f"beta: {beta}\n" in (job / "config.yaml").read_text()
        assert _metrics(job)["epochs"] == 2


def _hparams(job_dir: Path) -> tuple[api_pb2.Experiment, plugin_data_pb2.SessionStartInfo]:
    """The experiment and the session start of a job's HPARAMS entry."""
    events = tensorboard_run(job_dir)
    data = [
        plugin_data_pb2.HParamsPluginData.FromString(
            events.SummaryMetadata(tag).plugin_data.content
        )
        for tag in ("_hparams_/experiment", "_hparams_/session_start_info")
    ]
    return data[0].experiment, data[1].session_start_info


def test_every_job_holds_the_same_experiment_of_the_whole_sweep(sweep):
    entries = {name: _hparams(sweep / name) for name in JOBS}

    experiments = {experiment.SerializeToString() for experiment, _ in entries.values()}
    assert len(experiments) == 1  # whichever job TensorBoard reads first, the same columns
    for name, (latent_dim, beta) in JOBS.items():
        hparams = entries[name][1].hparams
        assert hparams["model.latent_dim"].number_value == latent_dim
        assert hparams["model.beta"].number_value == beta


def test_a_resumed_job_shows_its_new_settings_in_every_copy_of_the_experiment(
    sweep, tmp_path, data_dir
):
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    # Renamed: `resume=` cannot take a path with the '=' and ',' of a job's name yet.
    resumed = (copy / next(iter(JOBS))).rename(copy / "resumed")

    result = run_cli([f"resume={resumed}", "trainer.max_epochs=3"], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    for job in (p for p in copy.iterdir() if p.is_dir()):
        experiment, session = _hparams(job)
        (epochs,) = (h for h in experiment.hparam_infos if h.name == "trainer.max_epochs")
        assert list(epochs.domain_discrete) == [2, 3]
        assert epochs.differs
        session_epochs = session.hparams["trainer.max_epochs"].number_value
        assert session_epochs == (3 if job == resumed else 2)


def test_a_finished_sweep_rerun_with_resume_auto_skips_every_job_without_importing_torch(
    sweep, tmp_path, data_dir
):
    """Each job decides to skip before torch and Lightning (seconds to import) are loaded: the
    SLURM job of a finished job, a process of its own, ends in about a second."""
    shutil.copytree(sweep, tmp_path / "sweep")
    env = with_data_dir(data_dir)

    (result,), torch_imported = run_in_a_new_process(
        [("betavae-train", [*SWEEP, "resume=auto"])], tmp_path, env
    )

    assert result.returncode == 0, result.stderr
    for job in JOBS:
        assert f"Skipping sweep/{job}: finished already (metrics.json is there)" in result.stdout
        assert (tmp_path / "sweep" / job / "metrics.json").read_bytes() == (
            sweep / job / "metrics.json"
        ).read_bytes()
    assert not torch_imported


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def tensorboard(sweep: Path, tmp_path: Path) -> Iterator[str]:
    """A real `tensorboard --logdir <sweep>` (default, fast loading), stopped by its PID (with
    the data server it starts, in its process group); yields its URL once it has loaded."""
    url = f"http://127.0.0.1:{_free_port()}"
    command = [console_script("tensorboard"), "--logdir", str(sweep), "--host", "127.0.0.1"]
    with (tmp_path / "tensorboard.log").open("w") as log:
        server = subprocess.Popen(
            [*command, "--port", url.rsplit(":", 1)[1]],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if len(_get(f"{url}/data/runs")) == len(JOBS):
                    break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
            assert time.monotonic() < deadline, "TensorBoard did not load the sweep in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_tensorboard_shows_each_job_by_name_with_curves_and_the_sweep_in_hparams(
    sweep, tensorboard
):
    runs = _get(f"{tensorboard}/data/runs")
    tags = _get(f"{tensorboard}/data/plugin/scalars/tags")
    experiment = _get(f"{tensorboard}/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = experiment["hparamInfos"]
    by_name = {info["name"]: info for info in hparams}
    # Filters as TensorBoard's HPARAMS tab sets them: every value of each domain ticked.
    columns = [
        {"hparam": info["name"], "filterDiscrete": info["domainDiscrete"]}
        for info in hparams
        if "domainDiscrete" in info
    ]
    columns += [
        {"metric": info["name"], "includeInResult": True} for info in experiment["metricInfos"]
    ]
    groups = _get(
        f"{tensorboard}/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": [api_pb2.Status.Name(status) for status in api_pb2.Status.values()],
            "colParams": columns,
            "startIndex": 0,
            "sliceSize": 100,
        },
    )["sessionGroups"]

    assert sorted(runs) == sorted(JOBS)
    for name in JOBS:
        train = {tag: info for tag, info in tags[name].items() if tag.startswith("train/")}
        assert set(train) >= {"train/loss", "train/elbo", "train/recon", "train/kl"}
        assert all(info["description"] for info in tags[name].values())
        assert "epoch" not in tags[name]
        points = _get(f"{tensorboard}/data/plugin/scalars/scalars?run={name}&tag=train/elbo")
        assert len(points) == _metrics(sweep / name)["global_step"]
    # The swept keys first, their values as domains; every other setting listed, not differing.
    assert [info["name"] for info in hparams[:2]] == ["model.beta", "model.latent_dim"]
    assert by_name["model.latent_dim"]["domainDiscrete"] == [2, 4]
    assert by_name["model.beta"]["domainDiscrete"] == [1, 4]
    assert not any(info["differs"] for info in hparams[2:])
    assert by_name["model.learn_gaussian_std"]["type"] == "DATA_TYPE_BOOL"
    assert {"data.num_examples", "trainer.max_epochs", "seed"} <= set(by_name)
    assert experiment["metricInfos"][0]["name"]["tag"] == "val/elbo"
    assert sorted(group["name"] for group in groups) == sorted(JOBS)
    for group in groups:
        metrics = _metrics(sweep / group["name"])
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert (group["hparams"]["model.latent_dim"], group["hparams"]["model.beta"]) == JOBS[
            group["name"]
        ]
        assert values["val/elbo"] == pytest.approx(metrics["val/elbo"], rel=1e-5)
        assert values["val/kl"] == pytest.approx(metrics["val/kl"], rel=1e-5)
        assert set(values) == {info["name"]["tag"] for info in experiment["metricInfos"]}


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


def test_report_counts_the_jobs_a_stopped_sweep_never_started(sweep, tmp_path, monkeypatch, capsys):
    stopped = shutil.copytree(sweep, tmp_path / "stopped")
    shutil.rmtree(stopped / list(JOBS)[3])  # the sweep stopped before its last job began

    status, out, err = _report(stopped, monkeypatch, capsys)

    assert status == 0, err
    assert "3 of 4 jobs finished (1 not started)" in out


@pytest.mark.parametrize(
    ("task", "params", "jobs"),
    [
        (["model.beta=1,4", "model.latent_dim=range(2,10,2)", "trainer.max_epochs=3"], None, 8),
        # A preset's sweep (sprites_study), and the command line narrowing one of its keys.
        (["experiment=sprites_study"], {"seed": "0,1,2", "objective": "beta-1,beta-4"}, 6),
        (
            ["experiment=sprites_study", "seed=0"],
            {"seed": "0,1,2", "objective": "beta-1,beta-4"},
            2,
        ),
    ],
)
def test_the_planned_jobs_are_those_hydras_basic_sweeper_makes(tmp_path, task, params, jobs):
    sweeper = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    record = {
        "hydra": {"sweeper": {"_target_": sweeper, "params": params}, "overrides": {"task": task}}
    }
    OmegaConf.save(record, tmp_path / "multirun.yaml")
    assert planned_jobs(tmp_path) == jobs


def test_an_optuna_search_has_no_planned_job_count(tmp_path):
    sweeper = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    record = {"hydra": {"sweeper": {"_target_": sweeper}, "overrides": {"task": []}}}
    OmegaConf.save(record, tmp_path / "multirun.yaml")
    assert planned_jobs(tmp_path) is None


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
