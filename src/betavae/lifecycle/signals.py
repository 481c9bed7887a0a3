"""Signals that stop a run so that it can be continued: SIGTERM, SIGINT (Ctrl-C), SIGUSR1.

Schedulers stop jobs with a signal (SLURM preemption and `scancel`, Kubernetes and spot
instances send SIGTERM; a person presses Ctrl-C). Until training starts a signal stops the
process at once: nothing would be lost. Once it trains, the signal is only recorded, and
`stopping.GracefulStop` ends the run at the next moment a checkpoint can be written that
continues it exactly. A second signal stops the process at once, as a second Ctrl-C is meant
to; checkpoints are written atomically, so the last one stays readable.

SLURM sends SIGUSR1 before a job's time limit (`sbatch --signal=USR1@<seconds>`); it stops the
run like SIGTERM, and a sweep's SLURM job then requeues itself (`slurm`). Not
Lightning: its handler saves a checkpoint in the middle of a step. This module imports
nothing heavy, so the apps install the handlers before importing torch.
"""

import os
import signal
import threading
from types import FrameType


class RunStopped(BaseException):
    """The run was stopped by a signal at `step` (None: before training) and can be continued.

    A BaseException, like KeyboardInterrupt: it is not a failure of the job, and Hydra's
    sweeps must not record it as one and go on to the next job.
    """

    def __init__(self, signum: int, step: int | None) -> None:
        super().__init__(signum, step)
        self.signum = signum
        self.step = step

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """128 + the signal number, what a shell reports for a process a signal ended."""
        return 128 + self.signum


HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopRequests:
    """The signal this process was asked to stop by, if any; one instance per process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        # True until training starts: until then a signal stops the process at once.
        self.immediate = True
        # True once the run's results are written: a signal then has nothing left to stop.
        self.run_ended = False

    def install(self) -> None:
        """Register the handlers for a run about to start (the process's, or the next job's of
        a sweep): until it trains, a signal stops it at once, and one that came after the
        previous job ended stops it now. A no-op outside the main thread, where Python has no
        handlers."""
        if not self._register():
            return
        self.immediate, self.run_ended = True, False
        self.raise_if_requested(None)

    def training_started(self) -> None:
        """From now on a signal is only recorded, and the run stops at a step it can continue
        from. Lightning has put its own SIGTERM handler in front of ours by then (it ends the
        run with exit status 0 and no checkpoint of the step): take the signal back."""
        self._register()
        self.immediate = False

    def results_written(self) -> None:
        """The run has ended and written its results: a signal from now on is recorded (a
        sweep's next job does not start) but stops nothing of this run."""
        self.run_ended = True

    def _register(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._handle)
        return True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None and not self.immediate:
            os.write(2, f"\n{name} again: stopping at once, without a new checkpoint\n".encode())
            os._exit(128 + self.signum)
        self.signum = signum
        if self.run_ended:
            os.write(2, f"\n{name}: the run has ended and its results are written\n".encode())
            return
        if self.immediate:
            raise RunStopped(signum, step=None)
        os.write(
            2, f"\n{name}: stopping once this step is saved (again to stop at once)\n".encode()
        )

    def raise_if_requested(self, step: int | None) -> None:
        if self.signum is not None:
            raise RunStopped(self.signum, step)


# Signals reach a process, not a run: one record of them per process.
STOP_REQUESTS = StopRequests()
