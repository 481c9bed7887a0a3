"""Shared fixtures: a session-wide data cache, composing the real configs, a SLURM cluster."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from forkserver import ForkServer, start_server, stop_server
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas

LOCAL_SLURM = Path(__file__).parents[1] / "scripts" / "local_slurm.sh"


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist, each worker's torch, and the processes its tests start, use its
    share of the cores: two workers each running two OpenMP threads on two cores slow each
    other about tenfold (their threads spin-wait for each other)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = threads


_share_the_cores_between_workers()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than the cores (xdist caps it at --maxprocesses). The SLURM
    tests (one file, one worker) spend most of a minute waiting for the cluster's scheduler
    and time limits; a spare worker fills those cores meanwhile (2 cores: 227 s, not 246 s)."""
    return (os.cpu_count() or 1) + 1


# The files other than SLURM's that take a minute or more on one worker (2 cores, 3 workers:
# `pytest --durations` sums): started right after SLURM's, as they would otherwise be the last
# file still running while the other workers idle.
MINUTE_LONG_FILES = ("test_ddp.py", "test_interruptions.py", "test_usage_apps.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The SLURM tests first, then the files of a minute or more, the other slow ones, the
    quick ones last: xdist hands out whole files in this order (--no-loadscope-reorder), so
    the minutes the SLURM tests spend waiting on the cluster overlap the rest, and quick files
    fill the cores at the end instead of one worker finishing a long file alone."""

    def start_order(item: pytest.Item) -> int:
        if item.get_closest_marker("slurm"):
            return 0
        if item.path.name in MINUTE_LONG_FILES:
            return 1
        return 2 if item.get_closest_marker("slow") else 3

    items.sort(key=start_order)  # stable: each file's tests keep their order


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data cache for the whole session, so sprites are rendered once per size."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One short run (TINY_RUN, 3 epochs) in its default directory, outputs/<date>/<time>,
    shared read-only by the tests that read a finished run (a test that changes it copies it)."""
    from helpers import TINY_RUN, run_cli

    cwd = tmp_path_factory.mktemp("tiny_run")
    result = run_cli([*TINY_RUN, "trainer.max_epochs=3"], cwd, data_dir)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (path.parent for path in (cwd / "outputs").glob("*/*/config.yaml"))
    return run_dir


# pytest's main process, named to its workers (xdist's) in this variable: the owner of the
# session's fork server (forkserver.py).
MAIN_PROCESS = "BETAVAE_TESTS_MAIN_PROCESS"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # pytest's main process, xdist's or not
        os.environ[MAIN_PROCESS] = str(os.getpid())


def pytest_unconfigure(config: pytest.Config) -> None:
    """The main process stops the session's fork server once every worker has ended."""
    if not hasattr(config, "workerinput"):
        stop_server(int(os.environ.pop(MAIN_PROCESS)))


@pytest.fixture(scope="session")
def fork_server() -> ForkServer:
    """The session's server of `betavae-train` processes that skip the imports, started by the
    first worker that needs it and shared by all."""
    owner = int(os.environ[MAIN_PROCESS])
    start_server(owner)
    return ForkServer(owner)


@pytest.fixture
def compose_train() -> Iterator:
    """Compose `conf/train.yaml` with overrides through Hydra's compose API."""
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):

        def _compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
            return compose("train", overrides=overrides, return_hydra_config=return_hydra_config)

        yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """A one-node SLURM cluster for the session (scripts/local_slurm.sh); yields its slurm.conf.

    SLURM_CONF points the SLURM commands, and so the sweeps the tests start, at it. Skipped,
    with the reason, where SLURM is not installed or the tests do not run as root.
    """
    missing = [p for p in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(p) is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} missing); "
            f"install it with `sudo {LOCAL_SLURM} install` (Debian or Ubuntu)"
        )
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root: munged runs as the munge user")
    started = subprocess.run(
        [str(LOCAL_SLURM), "start"], capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr
    conf = started.stdout.strip().removeprefix("export SLURM_CONF=")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", conf)
        try:
            # slurmctld's log then names its checks of the jobs' time limits, every 30 s,
            # which test_slurm.py times a job's time limit by.
            subprocess.run(["scontrol", "setdebug", "debug2"], check=True)
            yield Path(conf)
        finally:
            subprocess.run([str(LOCAL_SLURM), "stop", conf], check=True, timeout=120)
