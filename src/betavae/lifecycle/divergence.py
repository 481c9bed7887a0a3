"""A run whose training loss stops being a number: stopped early, and recorded as diverged."""

import math

from torch import Tensor


class Diverged(Exception):
    """The training loss became NaN or infinite at `step`; training further cannot recover."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(step, loss)
        self.step = step
        self.loss = loss


def check_finite(loss: Tensor, step: int) -> None:
    """Raise `Diverged` if `loss` is NaN or infinite.

    Reading a value back from a GPU waits for all its queued work, so there the module checks
    only where it reads the loss anyway (the logging steps); on the CPU the read costs nothing
    and every step is checked, before the bad gradients reach the weights.
    """
    value = float(loss.detach())
    if not math.isfinite(value):
        raise Diverged(step, value)
