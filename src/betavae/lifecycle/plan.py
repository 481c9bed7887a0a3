"""What one invocation of betavae-train does with one run directory, decided before anything is
written.

An invocation asks something of a run directory: start a new run in it, continue the run it
holds (`resume=<run dir>`), rerun a sweep's job (`resume=auto`: whatever its directory holds;
also how a SLURM job that SLURM started again goes on), or start a new run from another run's
checkpoint (`ckpt_path=`). What it will do is one value, a `Plan`, computed here from three
things: the request (the config its command line composes), the directory's saved config and
result, and its checkpoints.

  start     a new run, in a directory that holds none
  restart   the directory holds an attempt that stopped before its first checkpoint: nothing
            can be continued, so it starts again in place
  continue  train on from the run's newest readable checkpoint, with the run's own config
  extend    a finished run trained to more epochs (its metrics.json is set aside, not lost)
  fork      a new run from another run's checkpoint: weights, optimizer state and counters
  skip      the run has ended (finished or diverged): nothing to do, nothing changes
  refuse    a `UserError`: one line, exit status 2, nothing changes

Every process that takes part in a run (each DDP rank, each task of a SLURM job) plans for
itself from the same directory, and the plan's own writes (`begin`) happen once all of them
have planned: so they all carry out the same plan.

A rerun of a sweep (`resume=auto`) compares each job's saved config with the one the command
composes for it. Settings of where and how a run runs (devices, paths, pictures) may differ
(`layout.is_experiment_key`); `trainer.max_epochs` follows one rule, so that a job trained
longer on its own (`resume=<job> trainer.max_epochs=6`) and its sweep can both be finished:
the larger of the two counts. A job trained past the sweep's epochs counts as ended, its files
untouched; a higher value in the command trains every ended job longer.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf, open_dict

from betavae.config.flat import flatten
from betavae.errors import UserError
from betavae.lifecycle.commands import (
    Compose,
    hydra_value,
    new_run_command,
    resume_command,
    sweep_command,
)
from betavae.lifecycle.layout import (
    AUTO_RESUME,
    CONFIG_FILE,
    DIVERGED,
    FINISHED,
    LAST_CHECKPOINT,
    METRICS_FILE,
    CheckpointFacts,
    clear_unfinished_attempt,
    is_experiment_key,
    is_run,
    read_config,
    read_metrics,
    remove_failed_start,
    require_checkpoint_file,
    save_config,
    set_aside_metrics,
)
from betavae.lifecycle.signals import RunStopped
from betavae.user_paths import shown_path, user_path

_EPOCHS = "trainer.max_epochs"


class Action(Enum):
    START = "start"
    RESTART = "restart"
    CONTINUE = "continue"
    EXTEND = "extend"
    FORK = "fork"
    SKIP = "skip"


class CheckpointReader(Protocol):
    """How the planner reads checkpoints. Only plans that depend on them read them: reading a
    checkpoint means importing torch, and a refusal should not wait for that."""

    def of_run(self, run_dir: Path) -> tuple[list[CheckpointFacts], list[Path]]:
        """(the run's readable checkpoints, last.ckpt first; the ones that cannot be read)."""

    def of_file(self, path: Path, key: str) -> CheckpointFacts:
        """One checkpoint file; a `UserError` naming `key` if it cannot be read."""


class DiskCheckpoints:
    def of_run(self, run_dir: Path) -> tuple[list[CheckpointFacts], list[Path]]:
        from betavae.lifecycle.checkpoints import readable_checkpoints

        return readable_checkpoints(run_dir)

    def of_file(self, path: Path, key: str) -> CheckpointFacts:
        require_checkpoint_file(path, key)
        from betavae.lifecycle.checkpoints import checkpoint_facts

        return checkpoint_facts(path, key)


@dataclass(frozen=True)
class Request:
    """What an invocation asks of one run directory."""

    run_dir: Path
    config: DictConfig
    """What the command line composes; for `resume=<run dir>`, the run's own settings with the
    command line's changes (the app composes them so)."""
    resume: str | None = None
    """None, `auto`, or the run directory as typed."""
    sweep_dir: Path | None = None
    """The sweep the run is a job of, if any."""
    compose: Compose | None = None
    """Composes overrides (Hydra), for a refusal that prints a new run's command."""
    checkpoints: CheckpointReader = field(default_factory=DiskCheckpoints)


@dataclass(frozen=True)
class RunState:
    """What a run directory holds: its saved config and, once it has ended, its result."""

    saved: DictConfig | None
    metrics: dict[str, Any] | None

    @classmethod
    def read(cls, run_dir: Path) -> "RunState":
        if not is_run(run_dir):
            return cls(None, None)
        ended = (run_dir / METRICS_FILE).is_file()
        return cls(read_config(run_dir), read_metrics(run_dir) if ended else None)

    @property
    def status(self) -> str | None:
        """finished or diverged once the run has ended, else None."""
        return None if self.metrics is None else self.metrics.get("status", FINISHED)


@dataclass(frozen=True)
class Plan:
    action: Action
    run_dir: Path
    config: DictConfig | None
    """The complete config the run trains with (None when it skips)."""
    checkpoint: Path | None = None
    """The checkpoint it continues or forks from."""
    notices: tuple[str, ...] = ()
    """What to tell the user before it starts (rank zero prints them)."""
    sweep_dir: Path | None = None
    """The sweep the run is a job of, if any."""

    @property
    def new_run(self) -> bool:
        """Whether the directory held no run before: a failed start leaves nothing there."""
        return self.action in (Action.START, Action.FORK)


def plan_run(request: Request, state: RunState) -> Plan:
    if request.resume is None:
        plan = _start(request, state)
    elif request.resume == AUTO_RESUME:
        plan = _rerun(request, state)
    else:
        plan = _resume(request, state)
    return replace(plan, sweep_dir=request.sweep_dir)


def begin(plan: Plan) -> None:
    """The plan's own writes, made once every process of the run has planned.

    A finished run's result is set aside before the config says it trains longer: stopped in
    between, the run is merely unfinished, never a finished run with a wrong epoch count.
    """
    if plan.action is Action.EXTEND:
        set_aside_metrics(plan.run_dir)
    if plan.action is Action.RESTART:
        clear_unfinished_attempt(plan.run_dir)
    save_config(plan.run_dir, plan.config)


@contextmanager
def removed_if_start_fails(plan: Plan, root: Path, may_remove: bool = True) -> Iterator[None]:
    """A new run that ends in a user error or a stop before its first checkpoint leaves nothing
    behind (`may_remove` is false on DDP ranks other than zero). A directory that held a run
    before this invocation, and a run that has a checkpoint to continue from, are kept."""
    try:
        yield
    except (UserError, RunStopped):
        started = (plan.run_dir / LAST_CHECKPOINT).is_file()
        if plan.new_run and may_remove and not started:
            remove_failed_start(plan.run_dir, root)
        raise


def _start(request: Request, state: RunState) -> Plan:
    if state.saved is not None:
        raise UserError(_taken(request))
    ckpt_path = request.config.ckpt_path
    if ckpt_path is None:
        return Plan(Action.START, request.run_dir, request.config)
    path = user_path(ckpt_path)
    facts = request.checkpoints.of_file(path, "ckpt_path")
    epochs = request.config.trainer.max_epochs
    if facts.epochs >= epochs:
        raise UserError(
            f"{_EPOCHS}={epochs}: ckpt_path={path} has {facts.epochs} epochs trained already, and "
            f"a run started from it counts on from there; set {_EPOCHS}={facts.epochs + 1} or more"
        )
    started = f"Starting from {shown_path(path)} (epoch {facts.epochs}, step {facts.step})"
    return Plan(Action.FORK, request.run_dir, request.config, path, (started,))


def _taken(request: Request) -> str:
    shown = shown_path(request.run_dir)
    if request.sweep_dir is None:
        return (
            f"{shown} holds a run already; continue it with: {resume_command(request.run_dir)}, "
            "or give the new run a directory of its own"
        )
    return (
        f"{shown} holds a run already; to continue its sweep, run the sweep's command with "
        "resume=auto, or give the new sweep a directory of its own"
    )


def _resume(request: Request, state: RunState) -> Plan:
    """`resume=<run dir>`: the run's own config, trained longer if asked."""
    run_dir = request.run_dir
    if state.saved is None:
        raise UserError(
            f"resume={run_dir}: not a betavae run directory (no {CONFIG_FILE} in it); pass a "
            "directory made by betavae-train, e.g. outputs/<date>/<time>"
        )
    if state.status == DIVERGED:
        raise UserError(_diverged(request, state))
    saved, now = _flat(state.saved), _flat(request.config)
    changed = _changed(saved, now)
    if changed:
        raise UserError(_keeps_its_config(request, state, changed, saved, now))
    before, epochs = saved[_EPOCHS], now[_EPOCHS]
    if epochs < before:
        raise UserError(
            f"{_EPOCHS}={epochs} is below the resumed run's {before}; a resumed run may only "
            "raise it"
        )
    if state.status == FINISHED and epochs == before:
        return Plan(
            Action.SKIP,
            run_dir,
            None,
            notices=(
                f"{shown_path(run_dir)} is finished ({_EPOCHS}={before}); nothing to do. To "
                f"train it longer: {resume_command(run_dir, 2 * before)}",
            ),
        )
    if state.status == FINISHED:
        return _extend(request, state, request.config)
    return _continue(request, request.config)


def _rerun(request: Request, state: RunState) -> Plan:
    """`resume=auto`: whatever the directory holds, if it is the run this command describes."""
    if state.saved is None:
        return _start(request, state)
    saved, now = _flat(state.saved), _flat(request.config)
    changed = _changed(saved, now)
    if changed:
        raise UserError(_other_config(request, changed, saved, now))
    config = request.config
    if saved[_EPOCHS] > now[_EPOCHS]:  # trained longer on its own: its epochs count
        config = OmegaConf.create(OmegaConf.to_container(config))
        with open_dict(config):
            config.trainer.max_epochs = saved[_EPOCHS]
    shown = shown_path(request.run_dir)
    if state.status == DIVERGED:
        return _skip(request, f"Skipping {shown}: diverged already ({METRICS_FILE} is there)")
    if state.status == FINISHED and now[_EPOCHS] > saved[_EPOCHS]:
        return _extend(request, state, config)
    if state.status == FINISHED:
        longer = ""
        if saved[_EPOCHS] > now[_EPOCHS]:
            longer = f", trained to {saved[_EPOCHS]} epochs (this command: {now[_EPOCHS]})"
        return _skip(
            request, f"Skipping {shown}: finished already{longer} ({METRICS_FILE} is there)"
        )
    return _continue(request, config)


def _skip(request: Request, notice: str) -> Plan:
    return Plan(Action.SKIP, request.run_dir, None, notices=(notice,))


def _continue(request: Request, config: DictConfig) -> Plan:
    """Continue from the run's newest readable checkpoint: last.ckpt, unless it cannot be read
    (a full disk, a copy cut short). Nothing is deleted: an unreadable file stays to inspect."""
    run_dir = request.run_dir
    readable, unreadable = request.checkpoints.of_run(run_dir)
    shown, last = shown_path(run_dir), run_dir / LAST_CHECKPOINT
    if not readable and unreadable:
        raise UserError(
            f"resume={shown}: {LAST_CHECKPOINT} cannot be read and the run has no other readable "
            f"checkpoint; start it again: {_new_run(request, {})}"
        )
    if not readable:
        notice = f"{shown} has no checkpoint (it stopped before its first): starting it again"
        return Plan(Action.RESTART, run_dir, config, notices=(notice,))
    # max() keeps the first of equals, and last.ckpt comes first.
    newest = max(readable, key=lambda facts: facts.step)
    notices = []
    if newest.path != last:
        why = "is older" if any(f.path == last for f in readable) else "cannot be read"
        if not last.is_file():
            why = "is missing"
        notices.append(
            f"resume: {shown_path(last)} {why}; continuing from {shown_path(newest.path)} "
            f"(step {newest.step}), the newest readable checkpoint of the run"
        )
    notices.append(f"Continuing from {shown_path(newest.path)}")
    return Plan(Action.CONTINUE, run_dir, config, newest.path, tuple(notices))


def _extend(request: Request, state: RunState, config: DictConfig) -> Plan:
    plan = _continue(request, config)
    if plan.action is not Action.CONTINUE:
        again = _new_run(request, {_EPOCHS: config.trainer.max_epochs})
        raise UserError(
            f"resume={shown_path(request.run_dir)}: the run has no checkpoint to train on from; "
            f"start it again with more epochs: {again}"
        )
    epochs = state.metrics["epochs"]
    notice = (
        f"Training {shown_path(request.run_dir)} on from epoch {epochs} to "
        f"{_EPOCHS}={config.trainer.max_epochs} (its {METRICS_FILE} of {epochs} epochs is kept as "
        f"metrics-epoch{epochs}.json)"
    )
    return replace(plan, action=Action.EXTEND, notices=(*plan.notices, notice))


def _flat(config: DictConfig) -> dict[str, Any]:
    return flatten(OmegaConf.to_container(config, resolve=True))


def _changed(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings of the experiment that differ, `trainer.max_epochs` aside. A key the saved
    config lacks is a setting added to betavae since the run started, with the behaviour the
    run had as its default: not a difference."""
    return sorted(
        key
        for key in saved.keys() & now.keys()
        if key != _EPOCHS and is_experiment_key(key) and saved[key] != now[key]
    )


def _new_run(request: Request, changes: dict[str, Any]) -> str:
    if request.compose is None:  # a job's own planning: its command line made the config
        return "betavae-train with the run's settings"
    return new_run_command(request.run_dir, changes, request.compose)


def _keeps_its_config(
    request: Request,
    state: RunState,
    changed: list[str],
    saved: dict[str, Any],
    now: dict[str, Any],
) -> str:
    first = changed[0]
    changes: dict[str, Any] = {key: now[key] for key in changed}
    run_dir = request.run_dir
    if (run_dir / LAST_CHECKPOINT).is_file():
        # A new run counts on from the checkpoint's epochs: a finished run needs more.
        epochs = max(now[_EPOCHS], saved[_EPOCHS] * (2 if state.status == FINISHED else 1))
        changes = {"ckpt_path": run_dir / LAST_CHECKPOINT, **changes, _EPOCHS: epochs}
        how = "start a new run from its checkpoint"
    else:
        how = "start a new run"
    return (
        f"{first}={hydra_value(now[first])}: a resumed run keeps its config ({_EPOCHS} may be "
        f"raised, the devices changed); to change it, {how}: {_new_run(request, changes)}"
    )


def _diverged(request: Request, state: RunState) -> str:
    lower = state.saved.model.lr / 10
    return (
        f"resume={shown_path(request.run_dir)}: the run diverged at step "
        f"{state.metrics['diverged_at_step']} and is final; start a new run with a lower learning "
        f"rate: {_new_run(request, {'model.lr': lower})}"
    )


def _other_config(
    request: Request, changed: list[str], saved: dict[str, Any], now: dict[str, Any]
) -> str:
    key = changed[0]
    difference = f"{key}={hydra_value(saved[key])}, now {hydra_value(now[key])}"
    if request.sweep_dir is None:
        again = f"continue it with: {resume_command(request.run_dir)}"
    else:
        command = sweep_command(request.sweep_dir)
        again = (
            f"rerun the sweep's own command: {command}"
            if command is not None
            else "rerun the sweep's own command"
        )
    return (
        f"resume=auto: {shown_path(request.run_dir)} was started with another config "
        f"({difference}); {again}, or start a new sweep without resume=auto"
    )
