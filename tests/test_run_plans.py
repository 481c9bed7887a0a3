"""The planner as a table: what a directory holds × what a command asks → the plan, or the one
line that refuses it. In-process, no training: each row takes milliseconds."""

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from betavae.config.flat import flatten
from betavae.errors import UserError
from betavae.lifecycle.layout import CheckpointFacts
from betavae.lifecycle.plan import Action, Request, RunState, plan_run

SAVED = {
    "seed": 0,
    "resume": None,
    "ckpt_path": None,
    "model": {"beta": 1.0, "lr": 0.001, "latent_dim": 4},
    "data": {"num_examples": 600, "data_dir": "/cache"},
    "trainer": {"max_epochs": 3, "devices": "auto", "precision": "32-true"},
}
# What a checkpoint of the run says: last.ckpt mid-way through epoch 3, best.ckpt of epoch 2.
LAST = CheckpointFacts(Path("checkpoints/last.ckpt"), step=40, epochs=2)
BEST = CheckpointFacts(Path("checkpoints/best.ckpt"), step=32, epochs=2)
FORK_SOURCE = CheckpointFacts(Path("/elsewhere/last.ckpt"), step=48, epochs=3)


class FakeCheckpoints:
    """The checkpoints a run directory holds, as the planner reads them, without torch."""

    def __init__(self, readable: list[CheckpointFacts], unreadable: list[str] = ()) -> None:
        self.readable, self.unreadable = readable, unreadable

    def of_run(self, run_dir: Path) -> tuple[list[CheckpointFacts], list[Path]]:
        facts = [CheckpointFacts(run_dir / f.path, f.step, f.epochs) for f in self.readable]
        return facts, [run_dir / name for name in self.unreadable]

    def of_file(self, path: Path, key: str) -> CheckpointFacts:
        return FORK_SOURCE


def _config(**changes: object) -> DictConfig:
    """The saved config with dotted keys changed."""
    config = OmegaConf.create(SAVED)
    for key, value in changes.items():
        OmegaConf.update(config, key.replace("__", "."), value)
    return config


def _run_dir(tmp_path: Path, status: str | None, files: tuple[str, ...] = ()) -> Path:
    """A run directory as a run leaves it: config.yaml, Hydra's record, metrics.json once it
    ended, and the checkpoint files named."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(_config()))
    (run_dir / ".hydra/overrides.yaml").write_text(yaml.safe_dump(["data.num_examples=600"]))
    if status is not None:
        metrics = {"status": status, "epochs": 3, "global_step": 48}
        if status == "diverged":
            metrics |= {"diverged_at_step": 20, "diverged_loss": "nan", "best_checkpoint": None}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    for name in files:
        (run_dir / name).parent.mkdir(exist_ok=True)
        (run_dir / name).touch()
    return run_dir


def _compose(overrides: list[str]) -> dict:
    """What the recorded command line composes: the saved config (no drift to reproduce)."""
    return flatten(SAVED)


def _plan(run_dir: Path, config: DictConfig, resume: str | None, checkpoints: FakeCheckpoints):
    request = Request(run_dir, config, resume, compose=_compose, checkpoints=checkpoints)
    return plan_run(request, RunState.read(run_dir))


UNFINISHED = (None, ("checkpoints/last.ckpt", "checkpoints/best.ckpt"), [LAST, BEST])
NO_CHECKPOINT = (None, (), [])
FINISHED = ("finished", ("checkpoints/last.ckpt",), [LAST])
DIVERGED = ("diverged", ("checkpoints/last.ckpt",), [LAST])

# (what the directory holds, what the command asks (resume, config changes), the plan:
#  its action and the epochs it trains to, or the start of the line that refuses it).
PLANS = [
    # resume=<run dir>: the run's own config; only trainer.max_epochs may rise, devices change.
    (UNFINISHED, ("run", {}), (Action.CONTINUE, 3)),
    (UNFINISHED, ("run", {"trainer.max_epochs": 5}), (Action.CONTINUE, 5)),
    (UNFINISHED, ("run", {"trainer.devices": 2}), (Action.CONTINUE, 3)),
    (UNFINISHED, ("run", {"data.data_dir": "/other/cache"}), (Action.CONTINUE, 3)),
    (NO_CHECKPOINT, ("run", {}), (Action.RESTART, 3)),
    (FINISHED, ("run", {}), (Action.SKIP, None)),
    (FINISHED, ("run", {"trainer.max_epochs": 6}), (Action.EXTEND, 6)),
    (UNFINISHED, ("run", {"model.beta": 4.0}), "model.beta=4: a resumed run keeps its config"),
    (UNFINISHED, ("run", {"trainer.max_epochs": 2}), "trainer.max_epochs=2 is below"),
    (UNFINISHED, ("run", {"trainer.precision": "bf16-mixed"}), "trainer.precision=bf16-mixed"),
    (DIVERGED, ("run", {}), "resume=run: the run diverged at step 20 and is final"),
    # resume=auto (a sweep's rerun): whatever the directory holds, if it is this experiment.
    (UNFINISHED, ("auto", {}), (Action.CONTINUE, 3)),
    (NO_CHECKPOINT, ("auto", {}), (Action.RESTART, 3)),
    (FINISHED, ("auto", {}), (Action.SKIP, None)),
    (DIVERGED, ("auto", {}), (Action.SKIP, None)),
    (FINISHED, ("auto", {"trainer.max_epochs": 6}), (Action.EXTEND, 6)),
    (UNFINISHED, ("auto", {"trainer.max_epochs": 6}), (Action.CONTINUE, 6)),
    # A job trained longer on its own (saved 3 here stands for the sweep's 2): its epochs count.
    (FINISHED, ("auto", {"trainer.max_epochs": 2}), (Action.SKIP, None)),
    (UNFINISHED, ("auto", {"trainer.max_epochs": 2}), (Action.CONTINUE, 3)),
    (UNFINISHED, ("auto", {"trainer.devices": 1}), (Action.CONTINUE, 3)),
    (UNFINISHED, ("auto", {"data.num_examples": 700}), "resume=auto: run was started with another"),
    # A plain start: a directory of its own.
    (UNFINISHED, (None, {}), "run holds a run already; continue it with: betavae-train resume=run"),
    (FINISHED, (None, {}), "run holds a run already"),
]


@pytest.mark.parametrize(("held", "asked", "expected"), PLANS)
def test_each_directory_state_and_command_has_one_plan(
    tmp_path, monkeypatch, held, asked, expected
):
    monkeypatch.chdir(tmp_path)
    status, files, readable = held
    resume, changes = asked
    _run_dir(tmp_path, status, files)
    config = _config(**{key.replace(".", "__"): value for key, value in changes.items()})
    if resume not in (None, "auto"):
        config.resume = resume
    checkpoints = FakeCheckpoints(readable)

    if isinstance(expected, str):
        with pytest.raises(UserError) as refused:
            _plan(Path("run"), config, resume, checkpoints)
        assert str(refused.value).startswith(expected), str(refused.value)
        assert "\n" not in str(refused.value)
        return
    plan = _plan(Path("run"), config, resume, checkpoints)
    action, epochs = expected
    assert plan.action is action
    if action is Action.SKIP:
        assert plan.config is None
    else:
        assert plan.config.trainer.max_epochs == epochs
    if action in (Action.CONTINUE, Action.EXTEND):
        assert plan.checkpoint == Path("run/checkpoints/last.ckpt")


def test_a_new_directory_starts_and_a_checkpoint_starts_a_fork(tmp_path):
    empty = tmp_path / "new"
    assert _plan(empty, _config(), None, FakeCheckpoints([])).action is Action.START
    assert _plan(empty, _config(), "auto", FakeCheckpoints([])).action is Action.START

    forked = _config(ckpt_path="/elsewhere/last.ckpt", trainer__max_epochs=4)
    plan = _plan(empty, forked, None, FakeCheckpoints([]))
    assert (plan.action, plan.checkpoint) == (Action.FORK, Path("/elsewhere/last.ckpt"))
    assert plan.notices == ("Starting from /elsewhere/last.ckpt (epoch 3, step 48)",)

    # The source has 3 epochs: a run from it with 3 has nothing to train.
    too_few = _config(ckpt_path="/elsewhere/last.ckpt", trainer__max_epochs=3)
    with pytest.raises(UserError, match=r"^trainer.max_epochs=3: ckpt_path=/elsewhere/last.ckpt "):
        _plan(empty, too_few, None, FakeCheckpoints([]))


def test_an_unreadable_last_checkpoint_continues_from_the_newest_readable_one(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run_dir = _run_dir(tmp_path, None, ("checkpoints/last.ckpt", "checkpoints/best.ckpt"))

    plan = _plan(Path("run"), _config(), "run", FakeCheckpoints([BEST], ["checkpoints/last.ckpt"]))

    assert (plan.action, plan.checkpoint) == (Action.CONTINUE, Path("run/checkpoints/best.ckpt"))
    assert plan.notices[0] == (
        "resume: run/checkpoints/last.ckpt cannot be read; continuing from "
        "run/checkpoints/best.ckpt (step 32), the newest readable checkpoint of the run"
    )
    with pytest.raises(UserError, match="cannot be read and the run has no other readable"):
        _plan(Path("run"), _config(), "run", FakeCheckpoints([], ["checkpoints/last.ckpt"]))
    assert run_dir.is_dir()


def test_a_refusal_prints_a_new_run_of_the_same_experiment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run_dir(tmp_path, "finished", ("checkpoints/last.ckpt",))

    with pytest.raises(UserError) as refused:
        _plan(Path("run"), _config(model__beta=4.0), "run", FakeCheckpoints([LAST]))

    # The run's recorded override, then the change, the checkpoint and epochs past its 3.
    assert str(refused.value).endswith(
        "start a new run from its checkpoint: betavae-train data.num_examples=600 "
        "ckpt_path=run/checkpoints/last.ckpt model.beta=4 trainer.max_epochs=6"
    )
