"""Helpers for tests that run the real console scripts: in this process, as a shell would run
them, or (where the process boundary is what a test is about) in a process of their own."""

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

import torch
from forkserver import ForkedProcess, ForkServer
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from betavae.config.flat import flatten
from betavae.lifecycle.layout import read_config
from betavae.training.tensorboard_hparams import HPARAMS_FILE

# Small, fast settings for runs that only need to exercise the machinery.
TINY_RUN = [
    "data.num_examples=600",
    "data.image_size=32",
    "data.batch_size=64",
    "model.hidden_dims=[64]",
    "model.latent_dim=4",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
]


def console_script(name: str) -> str:
    """The installed entry point next to this interpreter (works without an activated venv)."""
    return str(Path(sys.executable).parent / name)


# Each console script's `main` (module, function), without the quick exit of the installed
# script (betavae.apps.console), which would end the process.
MAINS = {
    "betavae-train": ("betavae.apps.train", "main"),
    "betavae-report": ("betavae.apps.report", "main"),
    **{
        f"betavae-{name}": ("betavae.apps.model_apps", f"{name}_main")
        for name in ("eval", "sample", "encode", "score")
    },
}
APPS = {
    script: lambda module=module, function=function: getattr(import_module(module), function)
    for script, (module, function) in MAINS.items()
}


def run_cli(
    args: list[str], cwd: Path, data_dir: Path, script: str = "betavae-train"
) -> subprocess.CompletedProcess:
    """Run a console script's `main` in this process as a shell would run the command: its
    argv, working directory and BETAVAE_DATA_DIR, its exit status (SystemExit), its output; a
    traceback, as Python prints one, for an exception that escapes it.

    Torch, Lightning and Hydra are imported once per test session instead of once per
    command; what a run changes in the process (directory, environment, signal handlers,
    logging, warning filters, torch's threads, Hydra's globals) is put back afterwards.
    """
    main = APPS[script]()
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        _as_a_command(script, args, cwd, data_dir),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            main()
            status = 0
        except SystemExit as exit:
            status = _exit_status(exit.code, stderr)
        except BaseException:
            traceback.print_exc(file=stderr)
            status = 1
    return subprocess.CompletedProcess(
        [script, *args], status, stdout.getvalue(), stderr.getvalue()
    )


def _exit_status(code: object, stderr: io.StringIO) -> int:
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=stderr)  # sys.exit("message") prints it and exits 1
    return 1


@contextlib.contextmanager
def _as_a_command(script: str, args: list[str], cwd: Path, data_dir: Path) -> Iterator[None]:
    saved_cwd, saved_argv, saved_env = os.getcwd(), sys.argv, dict(os.environ)
    handlers = {signum: signal.getsignal(signum) for signum in _HANDLED}
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level)
    threads = torch.get_num_threads()
    os.chdir(cwd)
    sys.argv = [script, *args]
    os.environ["BETAVAE_DATA_DIR"] = str(data_dir)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        _reset_stop_requests()
        for handler in root.handlers:
            if handler not in saved_logging[0]:
                handler.close()
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()


_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def _reset_stop_requests() -> None:
    from betavae.lifecycle.signals import STOP_REQUESTS

    STOP_REQUESTS.signum = None
    STOP_REQUESTS.immediate = True


# Where a run ran, not what it trained: a pasted command may leave them to the machine.
_WHERE = ("resume", "ckpt_path", "paths.", "data.data_dir")


def run_settings(run_dir: Path) -> dict:
    """A run's settings (its config.yaml, flat), less where it ran: what a printed command
    that continues or forks the run must keep."""
    config = flatten(OmegaConf.to_container(read_config(run_dir)))
    return {key: value for key, value in config.items() if not key.startswith(_WHERE)}


def with_data_dir(data_dir: Path) -> dict[str, str]:
    """This process's environment, with the tests' data cache as betavae's data directory."""
    return {**os.environ, "BETAVAE_DATA_DIR": str(data_dir)}


def paste(command: str, cwd: Path, data_dir: Path) -> subprocess.CompletedProcess:
    """A betavae command pasted into bash as printed: bash reads it (its quoting, `$VARIABLES`,
    `~`, a trailing comment) into words, and the command those words make runs in this
    process."""
    words = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {command}"],
        cwd=cwd,
        env=with_data_dir(data_dir),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")[:-1]
    script, *args = words
    return run_cli(args, cwd, data_dir, script=script)


# In a new Python process (this module imports torch): each command through its app's `main`,
# then whether torch was imported on the way.
_WITHOUT_TORCH = """
import contextlib, importlib, io, json, sys

results = []
for script, (module, function), args in json.loads(sys.argv[1]):
    main = getattr(importlib.import_module(module), function)
    sys.argv = [script, *args]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main()
            status = 0
        except SystemExit as exit:
            status = exit.code
    results.append((status, stdout.getvalue(), stderr.getvalue()))
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""


def run_in_a_new_process(
    commands: list[tuple[str, list[str]]], cwd: Path, env: dict[str, str]
) -> tuple[list[subprocess.CompletedProcess], bool]:
    """Each (script, args) in turn through its app's `main`, in one new Python process, where
    what a command imports is seen: their results, and whether torch was imported."""
    chosen = [(script, MAINS[script], args) for script, args in commands]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, json.dumps(chosen)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answered = json.loads(done.stdout.splitlines()[-1])
    results = [
        subprocess.CompletedProcess([script, *args], *result)
        for (script, args), result in zip(commands, answered["results"], strict=True)
    ]
    return results, answered["torch"]


def run_process(
    args: list[str], cwd: Path, data_dir: Path, timeout: float = 600, script: str = "betavae-train"
) -> subprocess.CompletedProcess:
    """The console script as a new interpreter: for what needs one (the README's command, the
    imports and the exit of a fresh process)."""
    return subprocess.run(
        [console_script(script), *args],
        cwd=cwd,
        env=with_data_dir(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_train(
    server: ForkServer, args: list[str], cwd: Path, data_dir: Path, **options: bool
) -> ForkedProcess:
    """`betavae-train` as a process of its own, forked by the tests' server (forkserver.py):
    for signals from outside, SIGKILL and runs started together. `options`: those of
    ForkServer.start."""
    argv = [console_script("betavae-train"), *args]
    return server.start(argv, cwd, with_data_dir(data_dir), **options)


def run_forked(
    server: ForkServer, args: list[str], cwd: Path, data_dir: Path, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`betavae-train` to its end as a process of its own, forked by the tests' server: for a
    run that starts processes itself (DDP's other ranks, new interpreters)."""
    process = start_train(server, args, cwd, data_dir)
    stdout, stderr = process.communicate(timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def event_file_pids(run_dir: Path) -> set[str]:
    """The processes that wrote a run's curves (events.out.tfevents.<time>.<host>.<pid>.<n>)."""
    files = run_dir.glob("events.out.tfevents.*")
    return {path.name.split(".")[-2] for path in files if path.name != HPARAMS_FILE}


def tensorboard_run(run_dir: Path) -> EventAccumulator:
    """A run's TensorBoard data as TensorBoard's server reads it, nothing sampled away: scalars
    and images as tensors, with the metadata (plugin, description) of each tag."""
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    """(step, value) of each point of a scalar tag."""
    return [(event.step, make_ndarray(event.tensor_proto).item()) for event in events.Tensors(tag)]


# hydra/launcher=slurm on the local cluster's CPU-only node (tests' slurm_cluster fixture).
SLURM_CPU = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]

_SLURM_ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "SIGNALING")


def slurm_job(job_id: str, timeout: float = 60) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, ExitCode, Restarts, ...) once the job has ended
    (its result file can appear before SLURM has seen its process exit); slurmctld keeps an
    ended job for MinJobAge, 5 minutes."""
    deadline = time.monotonic() + timeout
    while True:
        shown = subprocess.run(
            ["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True
        )
        assert shown.returncode == 0, shown.stderr
        job = dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)
        if job["JobState"] not in _SLURM_ACTIVE or time.monotonic() > deadline:
            return job
        time.sleep(0.2)
