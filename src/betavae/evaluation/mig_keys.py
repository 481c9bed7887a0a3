"""Where the Mutual Information Gap is written: its keys in metrics.json and TensorBoard.

Apart from the code that measures it so that reading results (betavae-report, the sweep summary)
imports neither torch nor Lightning and answers at once.
"""

MIG = "test/mig"
VAL_MIG = "val/mig"
# Followed by a factor's name: that factor's gap. Flat numbers like every other test/* metric.
MIG_GAP = "test/mig_gap/"
# Instead of MIG, where it could not be measured (a test split of a few examples): why not.
MIG_LEFT_OUT = "mig_left_out"


def mig_gaps(metrics: dict[str, float]) -> dict[str, float]:
    """The per-factor gaps of a run's metrics, by factor name, in the order they were written."""
    return {key.removeprefix(MIG_GAP): v for key, v in metrics.items() if key.startswith(MIG_GAP)}
