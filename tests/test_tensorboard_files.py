"""What betavae writes for TensorBoard, without training: the log interval, labelled pictures,
the records' checksums, and the HPARAMS experiment of a sweep built from its jobs' files."""

import json
import struct
from pathlib import Path

import pytest
import torch
import yaml
from helpers import scalars, tensorboard_run
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from betavae.evaluation.pictures import grid, traversal_labels
from betavae.training import event_checksums
from betavae.training.log_interval import log_interval
from betavae.training.tensorboard import RunLogger, scalar_value
from betavae.training.tensorboard_hparams import record_hparams


@pytest.mark.parametrize(
    ("total_steps", "interval"),
    [(24, 1), (199, 1), (348, 3), (1250, 12), (4690, 46), (50000, 50), (float("inf"), 50)],
)
def test_a_run_gets_about_a_hundred_training_points_a_long_one_one_every_50_steps(
    total_steps, interval
):
    assert log_interval(total_steps) == interval


def test_a_labelled_grid_puts_each_label_beside_its_row():
    images = torch.zeros(6, 1, 16, 16)  # enlarged to 64 pixels: 4 times
    labels = traversal_labels(torch.tensor([1, 0]), torch.tensor([0.5, 2.25]))

    plain = grid(images, per_row=3)
    labelled = grid(images, per_row=3, row_labels=labels)

    assert labels == ["z1  KL 2.25", "z0  KL 0.50"]
    assert plain.dtype == labelled.dtype == torch.uint8
    assert plain.shape == (1, 2 * 68 + 4, 3 * 68 + 4)  # grey images: one channel
    assert labelled.shape[1] == plain.shape[1] and labelled.shape[2] > plain.shape[2]
    assert torch.equal(labelled[:, :, -plain.shape[2] :], plain)
    label_column = labelled[:, :, : labelled.shape[2] - plain.shape[2]]
    for row in range(2):  # dark text in each row's band of the label column
        assert label_column[:, 4 + row * 68 : (row + 1) * 68].min() < 80
    with pytest.raises(ValueError, match="3 row labels for 2 rows"):
        grid(images, per_row=3, row_labels=["a", "b", "c"])


@pytest.mark.parametrize(
    ("value", "description"), [(1.5, "the loss"), (0.1, None), (-3e38, ""), (float("nan"), "é")]
)
def test_a_scalar_point_is_stored_as_tensorboards_own_scalar_summary(value, description):
    ours = scalar_value("train/loss", value, description).SerializeToString()
    assert (
        ours == scalar_pb("train/loss", value, description=description).value[0].SerializeToString()
    )


def test_a_step_of_several_values_is_one_event_and_the_epoch_none(tmp_path):
    logger = RunLogger(str(tmp_path))
    logger.log_metrics({"train/loss": 1.5, "train/kl": 0.25, "epoch": 0}, step=3)
    logger.log_metrics({"epoch": 1}, step=4)
    logger.finalize("success")
    (events,) = tmp_path.glob("events.out.tfevents.*")
    summaries = [
        event for event in EventFileLoader(str(events)).Load() if event.HasField("summary")
    ]
    tags = [[value.tag for value in event.summary.value] for event in summaries]
    assert tags[1:] == [["train/loss", "train/kl"]]  # after the custom-scalars layout
    assert [event.step for event in summaries[1:]] == [3]


def test_event_records_carry_the_checksums_tensorboards_own_code_computes(tmp_path):
    """The checksums are computed in C (betavae.training.event_checksums); each must equal the
    one TensorBoard's pure-Python code computes, which its readers check every record against."""
    logger = RunLogger(str(tmp_path))
    # TensorBoard's record writer looks the function up by this module-level name; a release
    # that stops doing so would quietly bring back the pure-Python checksums.
    assert RecordWriter.write.__globals__["masked_crc32c"] is event_checksums.masked_crc32c
    noise = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8, generator=torch.Generator())
    logger.log_image("val/samples", noise, step=3)
    logger.log_metrics({"train/loss": 1.5, "train/kl": 0.25}, step=3)
    logger.finalize("success")
    (events,) = tmp_path.glob("events.out.tfevents.*")
    data, checked, sizes = events.read_bytes(), 0, []
    while data:
        header, (header_crc,) = data[:8], struct.unpack("<I", data[8:12])
        (length,) = struct.unpack("<Q", header)
        record, (record_crc,) = (
            data[12 : 12 + length],
            struct.unpack("<I", data[12 + length : 16 + length]),
        )
        assert (header_crc, record_crc) == (masked_crc32c(header), masked_crc32c(record))
        data, checked = data[16 + length :], checked + 1
        sizes.append(length)
    assert checked >= 4  # the file's version, the layout, the picture and the two points
    assert max(sizes) > 300 * 400  # the noise picture, about as big as its pixels


def test_a_grid_of_colour_images_keeps_their_colours_in_bytes():
    images = torch.zeros(2, 3, 64, 64)
    images[0, 0] = 1.0  # red
    images[1, 2] = 0.5  # half blue

    picture = grid(images, per_row=2, row_labels=["colours"])

    assert picture.shape[0] == 3 and picture.dtype == torch.uint8
    # From the right: a line, the blue cell, a line, the red cell.
    red, blue = picture[:, 36, -(4 + 64 + 4 + 32)], picture[:, 36, -(4 + 32)]
    assert red.tolist() == [255, 0, 0] and blue.tolist() == [0, 0, 128]
    assert picture[:, 0, -1].tolist() == [204, 204, 204]  # the light lines between cells


def _job(sweep: Path, name: str, config: dict) -> Path:
    """A sweep job's directory as betavae-train leaves it: Hydra's record and config.yaml."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra/hydra.yaml").write_text(yaml.safe_dump({"hydra": {"mode": "MULTIRUN"}}))
    (job / ".hydra/config.yaml").write_text(yaml.safe_dump(config))
    (job / "config.yaml").write_text(yaml.safe_dump(config))
    return job


def _experiment(job: Path) -> dict[str, api_pb2.HParamInfo]:
    content = tensorboard_run(job).SummaryMetadata("_hparams_/experiment").plugin_data.content
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    return {info.name: info for info in experiment.hparam_infos}


def test_a_sweep_experiment_types_every_setting_and_never_hides_a_job(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    # The command swept model.beta over three values; two jobs have started so far.
    task = ["model.beta=1,2,4", "model.lr=0.001", "trainer.max_epochs=3"]
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
    first = {
        "model": {"beta": 1.0, "lr": 0.001, "hidden_dims": [64], "learn_gaussian_std": False},
        "trainer": {"max_epochs": 3, "gradient_clip_val": None},
        "paths": {"output_dir": "outputs"},
        "resume": None,
    }
    second = {**first, "model": {**first["model"], "beta": 2.0}, "seed": 1}
    second["trainer"] = {"max_epochs": 3, "gradient_clip_val": 0.5}
    jobs = [_job(sweep, "0_model.beta=1", first), _job(sweep, "1_model.beta=2", second)]

    record_hparams(jobs[1], sweep)

    experiments = [_experiment(job) for job in jobs]
    columns = experiments[0]
    assert experiments[1] == columns
    assert list(columns["model.beta"].domain_discrete) == [1, 2, 4]  # before job 2 started
    assert columns["model.beta"].differs and columns["model.beta"].type == api_pb2.DATA_TYPE_FLOAT64
    assert not columns["model.lr"].differs and list(columns["model.lr"].domain_discrete) == [0.001]
    assert columns["model.learn_gaussian_std"].type == api_pb2.DATA_TYPE_BOOL
    assert list(columns["model.hidden_dims"].domain_discrete) == ["[64]"]
    assert columns["seed"].differs  # set in one job only
    # null in one job, a number in the other: no type and no domain, which would filter one out.
    clip = columns["trainer.gradient_clip_val"]
    assert clip.differs and clip.type == api_pb2.DATA_TYPE_UNSET
    assert not clip.HasField("domain_discrete") and not clip.HasField("domain_interval")
    assert not {"paths.output_dir", "resume"} & set(columns)


def test_a_setting_with_many_numeric_values_gets_an_interval(tmp_path):
    jobs = [_job(tmp_path, str(n), {"model": {"lr": 10.0**-n}}) for n in range(12)]

    record_hparams(jobs[0], tmp_path)

    lr = _experiment(jobs[5])["model.lr"]
    assert (lr.domain_interval.min_value, lr.domain_interval.max_value) == (1e-11, 1.0)


def test_a_sweep_on_data_with_factors_lists_its_test_metrics_in_hparams(tmp_path):
    data = {"_target_": "betavae.data.SpritesDataModule"}
    jobs = []
    for number, tests in enumerate((["mig", "sap"], ["mig"])):
        config = {
            "data": data,
            "model": {"beta": 1.0 + number},
            "evaluation": {"test_metrics": tests},
        }
        job = _job(tmp_path, str(number), config)
        measured = {f"test/{name}": 0.25 + number for name in tests}
        (job / "metrics.json").write_text(json.dumps({**measured, "global_step": 40}))
        jobs.append(job)

    record_hparams(jobs[0], tmp_path)

    content = tensorboard_run(jobs[1]).SummaryMetadata("_hparams_/experiment").plugin_data.content
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    metrics = {info.name.tag: info.description for info in experiment.metric_infos}
    assert list(metrics)[:4] == ["val/elbo", "val/mig", "test/mig", "test/sap"]
    assert metrics["test/sap"].startswith("0-1: mean over factors of the gap in accuracy")
    # Which metrics a run measures is not a hyper-parameter of it.
    assert not [name for name in _experiment(jobs[0]) if name.startswith("evaluation.")]
    # HPARAMS shows a run's metric as the last value of the scalar of its tag in the run.
    events = tensorboard_run(jobs[0])
    assert scalars(events, "test/sap") == [(40, 0.25)]
    assert "test/sap" not in tensorboard_run(jobs[1]).Tags()["tensors"]
