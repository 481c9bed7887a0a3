"""Sweeps through other Hydra launchers and sweepers: parallel jobs, submitit/SLURM, Optuna."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TINY_RUN, console_script, event_file_pids, run_cli, with_data_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

from betavae.apps.multirun_job import (
    give_parallel_job_its_device,
    give_slurm_job_its_ranks,
    job_name_overrides,
    job_resume,
    parallel_jobs,
    register_resolvers,
)
from betavae.errors import UserError

CPU_RUN = [*TINY_RUN, "trainer.max_epochs=2"]


def _metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def _jobs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
def test_parallel_launcher_runs_two_jobs_at_once_on_cpu(tmp_path, data_dir):
    args = ["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *CPU_RUN]
    # Output to a file rather than a pipe, so that the command's own end is what is waited for.
    with (tmp_path / "sweep.log").open("w") as log:
        status = subprocess.run(
            [console_script("betavae-train"), *args, "model.beta=1,4", "hydra.sweep.dir=sweep"],
            cwd=tmp_path,
            env=with_data_dir(data_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
        ).returncode

    # loky's resource tracker, the last process to write to the output, ends soon after.
    deadline = time.monotonic() + 30
    while _holders(tmp_path / "sweep.log"):
        assert time.monotonic() < deadline, "a process of the sweep outlived it"
        time.sleep(0.1)
    output = (tmp_path / "sweep.log").read_text()
    assert status == 0, output
    assert "Joblib.Parallel(n_jobs=2,backend=loky" in output
    # Nothing a user cannot act on after the summary, such as the tracker's "leaked folder".
    assert "Warning" not in output, output
    jobs = _jobs(tmp_path / "sweep")
    # Each job ran in a worker process of its own, not one after the other in this process as
    # Hydra's basic launcher would run them.
    pids = [event_file_pids(job) for job in jobs]
    assert [len(p) for p in pids] == [1, 1]
    assert len(pids[0] | pids[1]) == 2
    # The workers ended with the command: none is left waiting for more work, holding a
    # user's `| tee` open for loky's five-minute idle timeout.
    for pid in pids[0] | pids[1]:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the sweep"
    for job in jobs:
        trainer = yaml.safe_load((job / "config.yaml").read_text())["trainer"]
        assert (trainer["accelerator"], trainer["devices"]) == ("cpu", 1)
        assert _metrics(job)["epochs"] == 2


# As a console script ends (apps/console.py: os._exit, none of Python's exit handlers), with the
# executor's call queue still referred to, as CI once found it.
_SWEEP_PROCESS_ENDING = """
import os, sys
import joblib
from _multiprocessing import sem_unlink
from joblib.externals.loky import reusable_executor
from betavae.apps.train import _end_parallel_workers

assert joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(abs)(i) for i in (-1, -2)) == [1, 2]
queue = reusable_executor._executor._call_queue
names = [lock._semlock.name for lock in (queue._rlock, queue._wlock, queue._sem)]
_end_parallel_workers()
for name in names:
    try:
        sem_unlink(name)
        print("still linked:", name)
    except FileNotFoundError:
        pass
sys.stdout.flush()
os._exit(0)
"""


def test_ending_the_parallel_workers_unlinks_the_semaphores_still_referred_to(tmp_path):
    log_path = tmp_path / "process.log"
    with log_path.open("w") as log:
        status = subprocess.run(
            [sys.executable, "-c", _SWEEP_PROCESS_ENDING],
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
        ).returncode
    deadline = time.monotonic() + 30
    while _holders(log_path):  # loky's resource tracker, which warns of leaks as it ends
        assert time.monotonic() < deadline, "loky's resource tracker outlived the process"
        time.sleep(0.1)
    output = log_path.read_text()
    assert status == 0, output
    assert "still linked" not in output
    assert "leaked" not in output, output


def _holders(path: Path) -> list[int]:
    """The processes that have `path` open."""
    holders = []
    for descriptor in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if descriptor.resolve() == path:
                holders.append(int(descriptor.parts[2]))
        except OSError:  # a process or descriptor that ended while we looked
            continue
    return holders


def _trainer_and_launcher(strategy: str, job_num: int) -> tuple:
    cfg = OmegaConf.create({"trainer": {"strategy": strategy, "accelerator": "auto", "devices": 4}})
    target = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    hydra_cfg = OmegaConf.create(
        {"launcher": {"_target_": target, "n_jobs": 2}, "job": {"num": job_num}}
    )
    return cfg, hydra_cfg


@pytest.mark.parametrize(
    ("gpus", "cores", "jobs"),
    [(0, 16, 16), (1, 16, 8), (2, 16, 16), (1, 4, 4), (4, 64, 32)],
)
def test_parallel_jobs_share_each_gpu_eight_ways_one_per_core_at_most(
    monkeypatch, gpus, cores, jobs
):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert parallel_jobs() == jobs


def test_parallel_jobs_get_one_device_each_and_refuse_ddp(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    cfg, hydra_cfg = _trainer_and_launcher("auto", job_num=9)
    give_parallel_job_its_device(cfg, hydra_cfg)
    assert (cfg.trainer.accelerator, cfg.trainer.devices) == ("gpu", [1])

    cfg, hydra_cfg = _trainer_and_launcher("ddp", job_num=0)
    with pytest.raises(UserError, match=r"trainer\.strategy=ddp: hydra/launcher=parallel gives"):
        give_parallel_job_its_device(cfg, hydra_cfg)


@pytest.mark.parametrize(
    ("argv", "excluded"),
    [
        (["model.beta=1"], None),  # a single run: Hydra's own naming is not used
        (["-m", "model.beta=1,4", "seed=3", "resume=auto"], "[resume,ckpt_path,seed]"),
        (["-m", "model.latent_dim=4", "model.latent_dim=2,4"], "[resume,ckpt_path]"),
        (
            ["-m", "hydra/launcher=parallel", "trainer=ddp", "model.beta=1,4"],
            "[resume,ckpt_path,trainer]",
        ),
    ],
)
def test_sweep_jobs_are_named_by_the_swept_keys_only(argv, excluded):
    expected = (
        [] if excluded is None else [f"hydra.job.config.override_dirname.exclude_keys={excluded}"]
    )
    assert job_name_overrides(argv) == expected


def test_slurm_launcher_gives_each_gpu_a_task_and_the_job_the_requeue_signal(compose_train):
    register_resolvers()
    launcher = compose_train(["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher

    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    # A typical cluster's GPU node: its default partition, 4 hours, one GPU and one task.
    assert launcher.partition is None
    assert (launcher.timeout_min, launcher.nodes, launcher.cpus_per_task) == (240, 1, 8)
    assert launcher.gpus_per_node == launcher.tasks_per_node == 1
    # SIGUSR1, the signal betavae stops and requeues the job at (submitit would send SIGUSR2).
    assert launcher.additional_parameters.signal == "USR1@120"

    overrides = ["hydra.launcher.gpus_per_node=4", "hydra.launcher.signal_delay_s=300"]
    launcher = compose_train(
        ["hydra/launcher=slurm", *overrides], return_hydra_config=True
    ).hydra.launcher
    assert launcher.tasks_per_node == 4
    assert launcher.additional_parameters.signal == "USR1@300"
    cpu_only = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0"]
    assert compose_train(cpu_only, return_hydra_config=True).hydra.launcher.tasks_per_node == 1


def _trainer_under_slurm(devices: object, num_nodes: int) -> tuple:
    cfg = OmegaConf.create({"trainer": {"devices": devices, "num_nodes": num_nodes}})
    target = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    launcher = {"_target_": target, "tasks_per_node": 2, "nodes": 3}
    return cfg, OmegaConf.create({"mode": RunMode.MULTIRUN, "launcher": launcher})


def test_slurm_jobs_take_their_ranks_from_the_launcher_and_refuse_other_counts():
    cfg, hydra_cfg = _trainer_under_slurm("auto", 1)
    give_slurm_job_its_ranks(cfg, hydra_cfg)
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (2, 3)

    cfg, hydra_cfg = _trainer_under_slurm(4, 1)
    with pytest.raises(UserError, match=r"^trainer\.devices=4: under hydra/launcher=slurm each "):
        give_slurm_job_its_ranks(cfg, hydra_cfg)


def test_a_slurm_job_that_slurm_started_again_continues_its_run(monkeypatch):
    cfg, hydra_cfg = _trainer_under_slurm("auto", 1)
    cfg.resume = None
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert job_resume(cfg, hydra_cfg) is None

    # Requeued (by itself at its time limit, by `scontrol requeue`, by preemption): resume=auto.
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert job_resume(cfg, hydra_cfg) == "auto"


@pytest.mark.slow
def test_a_sweep_runs_under_submitit(tmp_path, data_dir):
    """submitit's local executor: the job is pickled and run in a process of its own."""
    args = ["-m", "hydra/launcher=submitit_local", *TINY_RUN, "trainer.max_epochs=1"]
    result = run_cli([*args, "model.beta=1", "hydra.sweep.dir=sweep"], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    (job,) = _jobs(tmp_path / "sweep")
    assert job.name == "0"
    assert _metrics(job)["epochs"] == 1
    assert list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))


@pytest.mark.slow
def test_optuna_search_minimises_the_configured_metric(tmp_path, data_dir):
    args = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *TINY_RUN]
    args += ["trainer.max_epochs=1", "optimized_metric=test/elbo", "hydra.sweep.dir=sweep"]
    result = run_cli(args, tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    jobs = _jobs(tmp_path / "sweep")
    assert len(jobs) == 2
    assert all(job.name.startswith(f"{i}_model.beta=") for i, job in enumerate(jobs))
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(_metrics(job)["test/elbo"] for job in jobs))
