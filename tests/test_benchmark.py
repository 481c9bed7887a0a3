"""The throughput benchmark's workers still drive the real code paths and report results."""

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


@pytest.fixture
def throughput(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The benchmark script as a module, imported in this process (its modules import each
    other by name, so their directory goes on the path)."""
    monkeypatch.syspath_prepend(str(BENCHMARK.parent))
    return importlib.import_module("throughput")


def _refusal(throughput: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys, *argv: str) -> str:
    """What the script says on stderr when it refuses `argv`, having checked it exits 2."""
    monkeypatch.setattr(sys, "argv", ["throughput.py", *argv])
    with pytest.raises(SystemExit) as refused:
        throughput.main()
    assert refused.value.code == 2
    return capsys.readouterr().err


def _worker(name: str, args: list[str]) -> dict:
    """A worker as the benchmark starts one; its start-up is checked to lie within its run."""
    spawned_at = time.time()
    command = [sys.executable, str(BENCHMARK), "--worker", name, f"--spawned-at={spawned_at}"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert 0 < result["startup_s"] < time.time() - spawned_at
    return result


@pytest.mark.slow
def test_betavae_and_plain_workers_train_the_same_sprites(tmp_path):
    overrides = [
        "data=sprites",
        f"data.data_dir={tmp_path}",
        "data.num_examples=400",
        "data.image_size=28",
        "model.latent_dim=4",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
    ]
    betavae = _worker("betavae", ["--", *overrides])
    (sprites,) = (tmp_path / "sprites").glob("*.pt")
    fastest = _worker("fastest", [f"--sprites={sprites}", "--epochs=2", "--latent-dim=4"])

    for result in (betavae, fastest):
        _assert_two_epochs_reported(result)


def test_the_bare_lightning_worker_trains_the_same_sprites(
    throughput, tmp_path, monkeypatch, capsys
):
    """In this process (the worker's start-up is not what is checked here)."""
    sprites = throughput.render_sprites_file(tmp_path, num_examples=400, image_size=28)
    arguments = [f"--sprites={sprites}", "--epochs=2", "--latent-dim=4", "--spawned-at=0"]
    arguments.append(f"--threads={torch.get_num_threads()}")  # this process's, left as they are
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--worker", "lightning", *arguments])
    throughput.main()

    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("RESULT ")]
    _assert_two_epochs_reported(json.loads(line.removeprefix("RESULT ")))


def _assert_two_epochs_reported(result: dict) -> None:
    assert len(result["epoch_s"]) == 2
    assert result["images_per_s"] > 0
    # The whole of training: validation, checkpoints, logging and pictures where they run, so
    # it encloses every epoch's training batches. Not a comparison of the two rates: the last
    # epoch's alone, a fraction of a second here, can come out the lower (a picture drawn in a
    # thread beside it, the machine's noise), as in one CI run: 1,845 images/s end to end
    # against 1,582.
    assert sum(result["epoch_s"]) < result["fit_s"]
    assert result["end_to_end_images_per_s"] > 0
    assert result["peak_rss_mb"] > 100
    assert 0 < result["test_elbo"] < 28 * 28 * 0.7  # better than guessing every pixel


def test_the_cuda_graph_ceiling_says_why_it_is_skipped_without_a_gpu(throughput, capsys):
    throughput.WORKERS["graph"](argparse.Namespace(device="cpu", precision="32-true"))
    assert capsys.readouterr().out == (
        'RESULT {"skipped": "the CUDA-graph ceiling needs a CUDA GPU (torch.cuda.graphs)"}\n'
    )


def test_each_repeat_starts_with_the_next_contender_and_keeps_the_repeats_paired(
    throughput, monkeypatch
):
    """No contender always runs first or last, and the n-th result of each is from repeat n
    (the ratios within each repeat pair them so)."""
    order = []

    def run_worker(worker: str, threads: int, worker_args: list[str]) -> dict:
        order.append(worker)
        return {
            name: len(order)
            for name in ("images_per_s", "end_to_end_images_per_s", "startup_s", "peak_rss_mb")
        } | {"test_elbo": 0.0}

    monkeypatch.setattr(throughput, "_QUICK_RUNS", None)
    monkeypatch.setattr(throughput, "run_worker", run_worker)
    contenders = {label: (label, []) for label in ("a", "b", "c")}
    runs = throughput.compare(contenders, repeats=4, threads=1)
    assert "".join(order) == "abc" + "bca" + "cab" + "abc"
    assert list(runs) == ["a", "b", "c"]
    assert [runs[label]["images_per_s_all"] for label in runs] == [
        [1, 6, 8, 10],
        [2, 4, 9, 11],
        [3, 5, 7, 12],
    ]


def test_the_results_name_the_cpu_model_and_its_vector_extensions_as_lscpu_does(throughput):
    lscpu = dict(
        line.split(":", 1) for line in subprocess.check_output(["lscpu"], text=True).splitlines()
    )
    flags = set(lscpu["Flags"].split())
    expected = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]

    cpu = throughput.cpu_of(Path("/proc/cpuinfo").read_text())

    assert cpu == f"{lscpu['Model name'].strip()}, {' '.join(expected)}"
    older = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert throughput.cpu_of(older) == "AMD EPYC 7B12, avx2"


@pytest.mark.parametrize("option", ["--repeats", "--threads"])
def test_the_benchmark_refuses_fewer_than_one_repeat_or_thread_in_one_line(
    option, throughput, monkeypatch, capsys
):
    assert _refusal(throughput, monkeypatch, capsys, option, "0") == (
        f"throughput.py: error: {option} 0: give a whole number of at least 1\n"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_the_gpu_benchmark_refuses_a_machine_without_one_in_one_line(
    throughput, monkeypatch, capsys
):
    assert _refusal(throughput, monkeypatch, capsys, "--device", "cuda") == (
        "throughput.py: error: --device cuda: torch sees no CUDA GPU on this machine; "
        "leave --device out\n"
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("moment", ["as its second worker starts", "as its second thread starts"])
def test_a_stopped_benchmark_kills_its_workers_and_leaves_no_files(
    signum, moment, throughput, tmp_path, monkeypatch, capsys
):
    """Ctrl-C, or a SIGTERM to the driver alone (a real signal, to this process: the driver
    runs in it) while `--quick` starts its first pair of workers: from the thread that starts
    the second worker, or in the driver's thread while its thread pool is still starting the
    thread that started that worker (a stop raised there once left the thread outside the
    pool, its worker training on after the driver said it stopped)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    workers, pool_threads = [], []
    popen, start_thread = subprocess.Popen, threading.Thread.start
    second_worker_started, driver_returned = threading.Event(), threading.Event()

    def start_then_signal(command: list[str], **options) -> subprocess.Popen:
        process = popen(command, **options)
        if "--worker" in command:  # not platform's `uname -p`
            workers.append(process)
            if len(workers) == 2:
                second_worker_started.set()
                if moment == "as its second worker starts":
                    os.kill(os.getpid(), signum)
                else:  # the thread goes on once the driver has returned, or after 2 s
                    driver_returned.wait(timeout=2)
        return process

    def start_thread_then_signal(thread: threading.Thread) -> None:
        start_thread(thread)
        if thread.name.startswith("ThreadPoolExecutor"):
            pool_threads.append(thread)
            if len(pool_threads) == 2 and moment == "as its second thread starts":
                assert second_worker_started.wait(timeout=60)
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(subprocess, "Popen", start_then_signal)
    monkeypatch.setattr(threading.Thread, "start", start_thread_then_signal)
    out = tmp_path / "results.json"
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--quick", f"--out={out}"])
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        throughput.main()
    driver_returned.set()

    assert stopped.value.code == 128 + signum
    name = signal.Signals(signum).name
    assert capsys.readouterr().err == f"throughput.py: stopped by {name}; no results written\n"
    assert [thread.is_alive() for thread in pool_threads] == [False, False]
    assert [worker.returncode for worker in workers] == [-signal.SIGKILL] * 2  # no third began
    assert not out.exists()
    assert list(scratch.iterdir()) == []  # the data, and what the workers wrote
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def _state_and_parent(process: Path) -> tuple[str, int]:
    """A process's state letter and parent pid, from `process` (/proc/<pid>)."""
    fields = (process / "stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _workers(driver: int) -> dict[str, int]:
    """The live workers that `driver` started: their names (`--worker NAME`) and pids."""
    workers = {}
    for process in Path("/proc").glob("[0-9]*"):
        try:
            state, parent = _state_and_parent(process)
            argv = (process / "cmdline").read_bytes().decode().split("\0")
        except OSError:  # ended meanwhile
            continue
        if parent == driver and state != "Z" and "--worker" in argv:
            workers[argv[argv.index("--worker") + 1]] = int(process.name)
    return workers


def _ended(pid: int) -> bool:
    try:
        state, _ = _state_and_parent(Path(f"/proc/{pid}"))
    except FileNotFoundError:
        return True
    return state == "Z"  # ended, not yet reaped by its new parent


def _wait_for(condition: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_benchmark_killed_by_sigkill_takes_its_workers_along_and_the_next_removes_its_files(
    throughput, tmp_path, monkeypatch
):
    """SIGKILL leaves the driver no moment to stop its workers or remove its scratch: the
    kernel kills the workers with it (without that, --quick's first pair trained on for
    seconds, a full run's workers for up to a minute), and the next driver removes the
    scratch."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, str(BENCHMARK), "--quick", f"--out={tmp_path / 'results.json'}"]
    env = {**os.environ, "TMPDIR": str(scratch)}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The driver's data and the betavae worker's run directory, each a temporary directory
        # in the driver's scratch: the worker makes its own as it starts training.
        _wait_for(lambda: len(list(scratch.glob("throughput-*/tmp*"))) == 2, timeout=120)
        # Beside it, the other worker of --quick's first pair, or (that one done, as it can be
        # on a loaded machine) the next one, or none yet.
        workers = _workers(driver.pid)
    finally:
        driver.kill()
        driver.communicate()

    assert driver.returncode == -signal.SIGKILL
    assert "betavae" in workers
    # Each ends: by the kernel, or at its start if the driver was gone by then.
    _wait_for(lambda: all(_ended(pid) for pid in workers.values()), timeout=60)
    (left,) = scratch.iterdir()
    assert left.name.startswith(f"throughput-{driver.pid}-")
    # The betavae worker was killed in its run: its run directory is still there. Left alive,
    # it trained on and removed the directory as it ended (or as it failed, writing to the
    # driver's closed pipe).
    assert len(list(left.glob("tmp*"))) == 2
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with throughput.scratch_for_all():
        (own,) = scratch.iterdir()
        assert own.name.startswith(f"throughput-{os.getpid()}-")
    assert list(scratch.iterdir()) == []
