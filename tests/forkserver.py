"""`betavae-train` processes forked from a server that imported torch, Lightning and the train
app once, for the tests about a process of its own (signals from outside, SIGKILL, runs
started together) and for DDP's rank 0, which starts the other ranks.

A new `betavae-train` interpreter spends about 5 s of CPU on imports before its first step: a
3-epoch TINY_RUN took 6.3 CPU-s as a new process and 0.85 CPU-s forked from the server (2
cores). A forked run is still a process of its own, running the console script's function
with its own argv, working directory, environment and standard streams, stopped by real
signals. It skips the interpreter's start and the imports; the new processes of
test_command_line and test_readme, DDP's other ranks and the start-up benchmark still run
those.

The server is started as a new interpreter, once per pytest worker that needs it; run as a
script, this file is that server. It has run no torch operation when it forks (OpenMP's
threads are not fork-safe once started), and it ends, killing the runs it forked, when its
pytest worker closes its stdin or sends it SIGTERM.
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
    """The server process, and the requests to it."""

    def __init__(self, directory: Path) -> None:
        self._address = str(directory / "socket")
        self._process = subprocess.Popen(
            [sys.executable, __file__, self._address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        ready = self._process.stdout.readline()
        assert ready == "ready\n", f"the fork server did not start (exit {self._process.poll()})"

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

    def stop(self) -> None:
        """Ends the server, which kills any run it forked that is still running."""
        self._process.terminate()
        self._process.communicate(timeout=60)


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


def serve(address: str) -> None:
    betavae_train = _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    selector = selectors.DefaultSelector()
    for fileobj in (listener, wake_read, sys.stdin):
        selector.register(fileobj, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    print("ready", flush=True)
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj is listener:
                    connection, _ = listener.accept()
                    message, fds, _, _ = socket.recv_fds(connection, _MESSAGE, 3)
                    pid = os.fork()
                    if pid == 0:
                        signal.set_wakeup_fd(-1)
                        for sig in (signal.SIGCHLD, signal.SIGTERM):
                            signal.signal(sig, signal.SIG_DFL)
                        for sock in (listener, connection, *children.values()):
                            sock.close()
                        selector.close()
                        os.close(wake_read)
                        os.close(wake_write)
                        _run_in_the_child(betavae_train, json.loads(message), fds)
                    for fd in fds:
                        os.close(fd)
                    _send(connection, f"pid {pid}")
                    children[pid] = connection
                elif key.fileobj is wake_read:
                    os.read(wake_read, 4096)
                    while children and (ended := os.waitpid(-1, os.WNOHANG))[0]:
                        _send_status(children.pop(ended[0]), ended[1])
                elif not os.read(sys.stdin.fileno(), 4096):
                    return  # the pytest worker is gone
    finally:
        for pid, connection in children.items():
            os.kill(pid, signal.SIGKILL)
            _send_status(connection, os.waitpid(pid, 0)[1])


if __name__ == "__main__":
    serve(sys.argv[1])
