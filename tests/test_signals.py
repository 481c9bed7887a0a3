"""What the signal handler does at each moment of a run, called as the operating system calls
it (the real signals, to real processes: test_interruptions, test_slurm)."""

import signal

import pytest

from betavae.lifecycle.signals import RunStopped, StopRequests


def _training() -> StopRequests:
    """Requests of a process that trains (`training_started`, less installing the handlers in
    the test's own process)."""
    requests = StopRequests()
    requests.immediate = False
    return requests


def test_a_signal_during_training_is_kept_for_the_next_step_it_can_save(capfd):
    requests = _training()

    requests._handle(signal.SIGTERM, None)

    assert capfd.readouterr().err == (
        "\nSIGTERM: stopping once this step is saved (again to stop at once)\n"
    )
    assert requests.signum == signal.SIGTERM


def test_a_signal_after_the_results_are_written_says_so_and_still_stops_a_sweeps_next_job(capfd):
    requests = _training()
    requests.results_written()

    requests._handle(signal.SIGTERM, None)

    assert capfd.readouterr().err == "\nSIGTERM: the run has ended and its results are written\n"
    with pytest.raises(RunStopped) as stopped:  # what the next job's `install` checks first
        requests.raise_if_requested(None)
    assert stopped.value.signum == signal.SIGTERM
