"""The run's TensorBoard files: where they go, what each tag says about itself, the first view.

TensorBoard names a run by the directory of its event files relative to `--logdir`, so they are
written into the run directory itself: `--logdir outputs` shows `2026-11-21/15-28-47`, a
sweep's `--logdir multirun/<date>/<time>` shows each job by its name, and a resumed run appends
to the same run.
"""

import io
import re
import time
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.types_pb2 import DT_FLOAT
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.util.tensor_util import make_tensor_proto
from torch import Tensor

from betavae.evaluation.pictures import to_pixels
from betavae.training.descriptions import describe
from betavae.training.event_checksums import checksum_records_in_c

# Lightning adds the epoch to every logged dict; as a chart it only repeats the step axis.
_NOT_LOGGED = ("epoch",)
# CUSTOM SCALARS: one chart per quantity, the training and validation curves together
# (regular expressions over tags).
_LAYOUT = {
    "ELBO, reconstruction and KL: training and validation together": [
        ("negative ELBO (nats per example, lower is better)", r"^(train|val)/elbo$"),
        ("reconstruction −log p(x|z) (nats per example)", r"^(train|val)/recon$"),
        ("KL(q(z|x) ‖ p(z)) (nats per example)", r"^(train|val)/kl$"),
        ("objective recon + β·KL (nats per example)", r"^(train|val)/loss$"),
        ("M2's classifier: accuracy", r"^(train|val)/accuracy$"),
        ("M2's classifier: cross-entropy (nats per image)", r"^(train|val)/cross_entropy$"),
    ],
}


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, writing into the run directory, every scalar and image
    with its description, and the custom-scalars layout once per process.

    Its hparams.yaml is left out: the run's config.yaml is the record of its settings, and the
    HPARAMS entry is written by betavae.training.tensorboard_hparams.

    TensorBoard takes a tag's description from its first point, so only the first point of each
    tag in a process carries it; and the file is flushed at most every `FLUSH_SECONDS` (and when
    the run ends), not at every point as Lightning asks: each flush cost a millisecond or more.
    Pictures are compressed in the caller's thread (why: `betavae.training.image_logging`), and
    the records' checksums computed in C (why: `betavae.training.event_checksums`).
    """

    FLUSH_SECONDS = 5.0

    def __init__(self, save_dir: str, **kwargs: Any) -> None:
        super().__init__(save_dir, name="", version="", default_hp_metric=False, **kwargs)
        checksum_records_in_c()
        self._layout_written = False
        self._described: set[str] = set()
        self._flushed_at = time.monotonic()

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self._layout_written:
            self._write(_layout_summary(metrics), step or 0)
            self._layout_written = True
        # One event for all of a step's values: an event per value, each its own record and
        # writer-thread wake-up, cost about 40 µs more a value.
        summary = Summary()
        for tag, value in metrics.items():
            if tag in _NOT_LOGGED:
                continue
            description = None if tag in self._described else describe(tag)
            self._described.add(tag)
            summary.value.append(scalar_value(tag, float(value), description))
        if summary.value:
            self._write(summary, step)

    @rank_zero_only
    def log_image(self, tag: str, picture: Tensor, step: int) -> None:
        """`picture`: (C, H, W) uint8 (`pictures.grid`), stored as TensorBoard's image summary
        stores it: a PNG file, grey where C is 1."""
        pixels = to_pixels(picture)
        png = io.BytesIO()
        # Fast compression: at the default level, compressing took most of a picture's time.
        Image.fromarray(pixels).save(png, format="PNG", compress_level=1)
        height, width = pixels.shape[:2]
        summary = Summary()
        summary.value.add(
            tag=tag,
            metadata=image_metadata.create_summary_metadata(tag, describe(tag)),
            tensor=make_tensor_proto([str(width).encode(), str(height).encode(), png.getvalue()]),
        )
        self._write(summary, step)

    @rank_zero_only
    def begin_session(self, step: int) -> None:
        """Mark where this process's training starts: TensorBoard (its Python reader and its
        fast data server alike) hides the points that earlier files of the run hold at `step`
        or after. Those are points of a killed attempt past the checkpoint it is resumed from
        (the event file is flushed as a checkpoint is written and every few seconds, so a kill
        can land after the points and before the checkpoint); drawn beside the resumed ones,
        they doubled the curves from there on. A new run's marker at step 0 hides nothing."""
        start = Event(step=step, session_log=SessionLog(status=SessionLog.START))
        self.experiment._get_file_writer().add_event(start)

    @rank_zero_only
    def save(self) -> None:
        if time.monotonic() - self._flushed_at >= self.FLUSH_SECONDS:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write every point logged so far to the event file now."""
        self.experiment.flush()
        self._flushed_at = time.monotonic()

    def finalize(self, status: str) -> None:
        if rank_zero_only.rank == 0:
            self.experiment.flush()
        super().finalize(status)

    def _write(self, summary: Summary, step: int | None) -> None:
        self.experiment._get_file_writer().add_summary(summary, step)


def scalar_value(tag: str, value: float, description: str | None) -> Summary.Value:
    """The summary value TensorBoard's `scalar_pb` makes (a float32 scalar tensor, tagged for
    the scalars plugin), built directly: `scalar_pb` goes through numpy and its generic tensor
    conversion, about 35 µs a value."""
    return Summary.Value(
        tag=tag,
        metadata=scalar_metadata.create_summary_metadata(
            display_name=None, description=description
        ),
        tensor=TensorProto(dtype=DT_FLOAT, tensor_shape=TensorShapeProto(), float_val=[value]),
    )


def _layout_summary(first_logged: dict[str, float]) -> Summary:
    """The charts of the quantities that the run logs, known from its first logged values (all
    of a step's training means, or all of an epoch's validation values)."""
    layout = layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title=title,
                chart=[
                    layout_pb2.Chart(
                        title=chart, multiline=layout_pb2.MultilineChartContent(tag=[regex])
                    )
                    for chart, regex in charts
                    if any(re.search(regex, tag) for tag in first_logged)
                ],
            )
            for title, charts in _LAYOUT.items()
        ]
    )
    summary = Summary()
    summary.value.add(
        tag=custom_scalar_metadata.CONFIG_SUMMARY_TAG,
        metadata=custom_scalar_metadata.create_summary_metadata(),
        tensor=make_tensor_proto(layout.SerializeToString()),
    )
    return summary


def tensorboard_logdir(run_dir: Path, output_root: Path, sweep_dir: Path | None) -> Path:
    """The directory to point `tensorboard --logdir` at to see this run under its own name:
    its sweep, or the root of single runs (else the run's parent)."""
    if sweep_dir is not None:
        return sweep_dir
    inside = run_dir.resolve().is_relative_to(output_root.resolve())
    return output_root if inside and run_dir.resolve() != output_root.resolve() else run_dir.parent
