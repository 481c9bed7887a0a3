"""`betavae-train` processes forked from a server that imported torch, Lightning and the train
app once, for the tests about a process of its own (signals from outside, SIGKILL, runs
started together), for DDP's rank 0, which starts the other ranks, and for a SLURM sweep's
submission (submitit, imported in the forked process, writes to its streams).

A new `betavae-train` interpreter spends about 5 s of CPU on imports before its first step: a
3-epoch TINY_RUN took 6.3 CPU-s as a new process and 0.85 CPU-s forked from the server (2
cores). A forked run is still a process of its own, running the console script's function
with its own argv, working directory, environment and standard streams, stopped by real
signals. It skips the interpreter's start and the imports; the new processes of
test_command_line and test_readme, DDP's other ranks and the start-up benchmark still run
those.

The server is started as a new interpreter, once per test session, by the first pytest
worker that needs it, and the other workers use it too (its imports cost each start about 6
CPU-s); run as a script, this file is that server. It listens at an abstract socket address
named by pytest's main process (nothing on disk), has run no torch operation when it forks
(OpenMP's threads are not fork-safe once started), and ends on SIGTERM (sent by that main
process at the session's end) or when that process ends. It kills the runs it forked that are
still running then, with the processes they started (DDP's other ranks): each run is a process
group of its own.
"""

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

_MESSAGE = 1 << 20  # a request (argv, cwd, environment) fits in one packet of this size


class ForkedProcess:
    """What the tests use of `subprocess.Popen`, for a process forked by the server, which is
    its parent and sends its exit status (as Popen's `returncode`: -N for signal N)."""

    def __init__(self, connection: socket.socket, args: list[str], stdout: int, stderr: int):
        self.args = args
        self.returncode: int | None = None
        self._connection = connection
        self.pid = int(connection.recv(_MESSAGE).decode().removeprefix("pid "))
        # Closed by communicate(), as Popen's are.
        self.stdout = open(stdout, encoding="utf-8") if stdout >= 0 else None  # noqa: SIM115
        self.stderr = open(stderr, encoding="utf-8") if stderr >= 0 else None  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None:
            self._connection.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                self._receive_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._connection.settimeout(timeout)
            try:
                self._receive_status()
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
        assert self.returncode is not None
        return self.returncode

    def _receive_status(self) -> None:
        self.returncode = int(self._connection.recv(_MESSAGE).decode().removeprefix("exit "))
        self._connection.close()

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        """Both outputs read to their end at once (a process blocked on a full pipe would
        never end), then the exit status."""
        streams = [stream for stream in (self.stdout, self.stderr) if stream is not None]
        texts: dict[object, str] = {}
        readers = [
            threading.Thread(target=lambda s=s: texts.setdefault(s, s.read()), daemon=True)
            for s in streams
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        for stream in streams:
            stream.close()
        self.wait(timeout)
        return texts.get(self.stdout), texts.get(self.stderr)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The requests to the server of pytest's main process `owner` (`start_server`)."""

    def __init__(self, owner: int) -> None:
        self._address = server_address(owner)

    def start(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        capture: bool = True,
        new_session: bool = False,
    ) -> ForkedProcess:
        """`argv` run as a new process, its output to pipes (`capture`) or to /dev/null, in a
        session of its own if `new_session` (to be killed with its process group)."""
        request = {"argv": argv, "cwd": str(cwd), "env": env, "new_session": new_session}
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        connection.connect(self._address)
        stdin = os.open(os.devnull, os.O_RDONLY)
        outputs = [
            os.pipe() if capture else (-1, os.open(os.devnull, os.O_WRONLY)) for _ in range(2)
        ]
        try:
            child_ends = [stdin, *(write for _, write in outputs)]
            socket.send_fds(connection, [json.dumps(request).encode()], child_ends)
        finally:
            for fd in child_ends:
                os.close(fd)
        (stdout, _), (stderr, _) = outputs
        return ForkedProcess(connection, argv, stdout, stderr)


def server_address(owner: int) -> str:
    """The abstract socket address (Linux) of the server of pytest's main process `owner`."""
    return f"\0betavae-tests-fork-server-{owner}"


# The servers this process started: kept, as each outlives its use here (the other pytest
# workers use it, and pytest's main process stops it).
_STARTED: list[subprocess.Popen] = []


def start_server(owner: int) -> None:
    """Starts the server of pytest's main process `owner` unless another worker has: a second
    server finds the address taken and ends at once, before its imports. Returns once the
    server listens (requests wait while it imports)."""
    process = subprocess.Popen(
        [sys.executable, __file__, str(owner)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    _STARTED.append(process)
    assert process.stdout is not None
    answer = process.stdout.readline()
    assert answer in ("listening\n", "taken\n"), f"no fork server (exit {process.poll()})"


def stop_server(owner: int) -> None:
    """Ends the server of `owner`, if one was started (SIGTERM: it kills the runs it still has),
    and waits for it to end."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
        try:
            probe.connect(server_address(owner))
        except ConnectionRefusedError:  # none was started
            return
        credentials = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid = int.from_bytes(credentials[:4], sys.byteorder)  # struct ucred's pid
    ended = os.pidfd_open(pid)
    os.kill(pid, signal.SIGTERM)
    with selectors.DefaultSelector() as selector:
        selector.register(ended, selectors.EVENT_READ)
        assert selector.select(timeout=60), f"the fork server {pid} did not end"
    os.close(ended)


def _preload() -> Callable[[], None]:
    """What a run imports, imported once; returns the console script's function."""
    import lightning.pytorch  # noqa: F401

    import betavae.training.pipeline  # noqa: F401
    from betavae.apps.console import betavae_train

    return betavae_train


def _run_in_the_child(betavae_train: Callable[[], None], request: dict, fds: list[int]) -> None:
    """Becomes the requested process: the console script's function ends it with its exit
    status; a traceback (a bug) ends it with status 1, as in a new interpreter."""
    try:
        if request["new_session"]:
            os.setsid()
        else:
            os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = request["argv"]
        sys.path[0] = str(Path(sys.argv[0]).parent)
        betavae_train()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(1)


def _send(connection: socket.socket, message: str) -> None:
    """A test that stopped waiting (it failed) has closed its end: nothing to tell it."""
    with contextlib.suppress(OSError):
        connection.send(message.encode())


def _send_status(connection: socket.socket, wait_status: int) -> None:
    _send(connection, f"exit {os.waitstatus_to_exitcode(wait_status)}")
    connection.close()


def serve(owner: int) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        listener.bind(server_address(owner))
    except OSError:  # another pytest worker's server is there
        print("taken", flush=True)
        return
    listener.listen()
    print("listening", flush=True)
    owner_ended = os.pidfd_open(owner)  # readable once pytest's main process has ended
    betavae_train = _preload()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    selector = selectors.DefaultSelector()
    for fileobj in (listener, wake_read, owner_ended):
        selector.register(fileobj, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj is listener:
                    connection, _ = listener.accept()
                    message, fds, _, _ = socket.recv_fds(connection, _MESSAGE, 3)
                    if not message:  # `stop_server` asking who listens
                        connection.close()
                        continue
                    pid = os.fork()
                    if pid == 0:
                        signal.set_wakeup_fd(-1)
                        for sig in (signal.SIGCHLD, signal.SIGTERM):
                            signal.signal(sig, signal.SIG_DFL)
                        for sock in (listener, connection, *children.values()):
                            sock.close()
                        selector.close()
                        for fd in (wake_read, wake_write, owner_ended):
                            os.close(fd)
                        _run_in_the_child(betavae_train, json.loads(message), fds)
                    for fd in fds:
                        os.close(fd)
                    _send(connection, f"pid {pid}")
                    children[pid] = connection
                elif key.fileobj is wake_read:
                    os.read(wake_read, 4096)
                    while children and (ended := os.waitpid(-1, os.WNOHANG))[0]:
                        _send_status(children.pop(ended[0]), ended[1])
                else:
                    return  # pytest's main process is gone
    finally:
        for pid, connection in children.items():
            with contextlib.suppress(ProcessLookupError):  # ended, with all of its group
                os.killpg(pid, signal.SIGKILL)
            _send_status(connection, os.waitpid(pid, 0)[1])


if __name__ == "__main__":
    serve(int(sys.argv[1]))
