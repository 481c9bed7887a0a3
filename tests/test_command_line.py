"""The command line as a person meets it: every mistake one line, help that names the keys,
commands printed that work when pasted, and a console without repeated lines."""

import os
from pathlib import Path

import pytest
from helpers import TINY_RUN, paste, run_cli, run_in_a_new_process, run_process

pytestmark = pytest.mark.slow

# A placeholder in the arguments below for the module's trained run.
RUN = "<run>"
LAST = "<run>/checkpoints/last.ckpt"

CORES = len(os.sched_getaffinity(0))
# (command, arguments, what the one line must name, whether it is answered before torch loads)
BAD_INPUTS = [
    ("train", ["model.latent_dim=-3"], "model.latent_dim=-3", True),
    ("train", ["data=nope"], "data=nope", True),
    ("train", ["model=transformer"], "model=transformer", True),
    ("train", ["+model.foo=1"], "model.foo", True),
    ("train", ["+model.latentdim=8"], "did you mean model.latent_dim?", True),
    ("train", ["+trainer.max_epoch=3"], "did you mean trainer.max_epochs?", True),
    ("train", ["trainer.max_epoch=3"], "did you mean trainer.max_epochs?", True),
    ("train", ["trainer.devices=-2"], "trainer.devices=-2", True),
    ("train", ["model.channels_last=true"], "only model=conv has this key; add model=conv", True),
    (
        "train",
        ["data.download=true"],
        "only data=celeba, data=cifar10, data=fashion_mnist and data=mnist have this key",
        True,
    ),
    ("train", ["trainer.precision=fp8"], "trainer.precision", True),
    ("train", ["trainer.strategy=fsdp"], "trainer.strategy", True),
    ("train", ["trainer.max_epochs=0"], "trainer.max_epochs=0", True),
    ("train", ["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val", True),
    ("train", ["trainer.limit_train_batches=0"], "trainer.limit_train_batches", True),
    ("train", ["model.likelihood=poisson"], "model.likelihood", True),
    ("train", ["model.beta=-1"], "model.beta=-1.0", True),
    ("train", ["model.lr=abc"], "model.lr", True),
    ("train", ["data.image_size=4"], "data.image_size=4", True),
    ("train", ["optimized_metric=val/foo"], "optimized_metric", True),
    ("train", ["evaluation.test_metrics=[mig,dci]"], "dci: no such metric; a list of any", True),
    ("train", ["evaluation.samples=all"], "evaluation.samples='all'", True),
    ("train", ["callbacks.checkpoint.every_n_minutes=0"], "every_n_minutes", True),
    ("train", ["ckpt_path=/no/such.ckpt"], "ckpt_path=/no/such.ckpt", True),
    ("train", ["resume=/no/such/run"], "resume=/no/such/run", True),
    ("train", [f"resume={RUN}", "model.beta=4"], "model.beta=4", True),
    ("train", [f"resume={RUN}", "trainer.max_epochs=1"], "trainer.max_epochs=1", True),
    ("train", ["-m", "hydra/launcher=slurm", "model.beta=1,4"], "hydra/launcher=slurm", True),
    (
        "train",
        ["-m", 'hydra.sweeper.params={model.beta:"1,4",model.latent_dim:"2,8"}', "seed=3"],
        "its values instead: betavae-train -m seed=3 model.beta=1,4 model.latent_dim=2,8",
        True,
    ),
    ("train", ["trainer.check_val_every_n_epoch=11"], "trainer.check_val_every_n_epoch=11", True),
    ("train", [f"resume={RUN}", "ckpt_path=x.ckpt"], "resume= and ckpt_path= exclude", True),
    ("train", ["resume=auto"], "resume=auto continues what a directory holds", True),
    ("train", ["data=image_folder", "data.path=~/pictures"], "\"data.path='~/pictures'\"", True),
    ("train", ["trainer.accelerator=gpu"], "trainer.accelerator=gpu", False),
    ("train", ["trainer.devices=64"], f"machine has {CORES} CPU core(s) and no GPU", False),
    ("train", ["trainer=cpu", "trainer.devices=[0]"], "trainer.devices=[0]", False),
    ("train", ["data.exclude_classes=[5]"], "there is no class 5", False),
    ("train", ["data.exclude_classes=[0,1,2]"], "data.exclude_classes=[0, 1, 2]", False),
    ("train", [*TINY_RUN, f"ckpt_path={LAST}", "trainer.max_epochs=2"], "max_epochs=2", False),
    ("train", [*TINY_RUN, f"ckpt_path={LAST}", "trainer.max_epochs=3"], "=4 or more", False),
    ("train", [*TINY_RUN, "model.latent_dim=8", f"ckpt_path={LAST}"], "(this config: 8)", False),
    ("eval", [], "run is missing", True),
    ("eval", ["run=/no/such/run"], "run=/no/such/run", True),
    ("eval", [f"run={RUN}", "k=0"], "k=0", True),
    ("eval", [f"run={RUN}", "split=training"], "split='training'", True),
    ("eval", [f"run={RUN}", "metrics=[sap,migg]"], "metrics=['sap', 'migg']", True),
    ("sample", [f"run={RUN}", "n=0"], "n=0", True),
    (
        "sample",
        ["run=multi/2_model.beta=1,model.x=8"],
        "\"run='multi/2_model.beta=1,model.x=8'\"",
        True,
    ),
    ("sample", [f"run={RUN}", "steps=1"], "steps=1", True),
    ("sample", [f"run={RUN}", "steeps=3"], "steeps: no such key; did you mean steps?", True),
    ("sample", [f"run={RUN}", "+data.batchsize=8"], "did you mean data.batch_size?", False),
    ("encode", [f"run={RUN}", "data=nope"], "data=nope", True),
    ("encode", [f"run={RUN}", "+data.image_size=28"], "images are [1, 28, 28]", False),
    ("encode", [f"run={RUN}", "+data.download=true"], "data.download: only data=celeba", False),
    ("score", [f"run={RUN}", "score=magic"], "score='magic'", True),
    ("score", [f"run={RUN}", "quantile=1.5"], "quantile=1.5", True),
    ("score", [f"run={RUN}", "neighbours=0"], "neighbours=0", True),
    ("report", [], "the following arguments are required: sweep_dir", True),
    ("report", ["/no/such/sweep"], "/no/such/sweep: no such directory", True),
]


def _env(data_dir: Path) -> dict[str, str]:
    # A SLURM configuration that does not exist: sbatch may be installed, no cluster answers.
    return {**os.environ, "BETAVAE_DATA_DIR": str(data_dir), "SLURM_CONF": "/nonexistent"}


def _contents(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(tiny_run: Path) -> Path:
    """The session's short run: TINY_RUN, 3 epochs."""
    return tiny_run


@pytest.mark.parametrize(("command", "args", "named", "quick"), BAD_INPUTS)
def test_every_mistake_is_one_line_and_leaves_nothing_behind(
    trained, tmp_path, data_dir, monkeypatch, command, args, named, quick
):
    monkeypatch.setenv("SLURM_CONF", "/nonexistent")  # sbatch may be here, no cluster answers
    args = [arg.replace(RUN, str(trained)) for arg in args]
    before = _contents(trained)

    result = run_cli(args, tmp_path, data_dir, script=f"betavae-{command}")

    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"betavae-{command}: error: ")
    assert named in line
    assert "Traceback" not in result.stdout + result.stderr
    assert not list(tmp_path.iterdir())  # no run or sweep directory, nothing else
    assert _contents(trained) == before


def test_quick_mistakes_and_help_are_answered_before_torch_is_imported(trained, tmp_path, data_dir):
    """A mistake in the config or the command line, and `--help`, are answered at once:
    before torch and Lightning (seconds to import) are loaded. One process runs them all."""
    cases = [
        (f"betavae-{command}", [arg.replace(RUN, str(trained)) for arg in args])
        for command, args, _, quick in BAD_INPUTS
        if quick
    ]
    helps = [(f"betavae-{command}", ["--help"]) for command in APPS]

    results, torch_imported = run_in_a_new_process([*cases, *helps], tmp_path, _env(data_dir))

    assert [result.returncode for result in results] == [2] * len(cases) + [0] * len(helps)
    assert not torch_imported


APPS = ("train", "eval", "sample", "encode", "score", "report")


@pytest.mark.parametrize("command", APPS)
def test_help_explains_the_command_and_names_its_keys(command, tmp_path, data_dir):
    result = run_cli(["--help"], tmp_path, data_dir, script=f"betavae-{command}")

    assert result.returncode == 0
    shown = result.stdout
    keys = {
        "train": [
            "model.latent_dim",
            "model.beta",
            "model.objective",
            "model.m2_alpha",
            "data.labels_per_class",
            "trainer.max_epochs",
            "evaluation.test_metrics",
            "resume",
            "ckpt_path",
        ],
        "eval": [
            "run",
            "split",
            "k",
            "metrics",
            "samples",
            "labels_per_class",
            "label_seeds",
            "seed",
            "overwrite",
        ],
        "sample": ["run", "n", "traverse", "span", "steps", "interpolate", "pairs", "overwrite"],
        "encode": ["run", "split", "data", "overwrite"],
        "score": ["run", "score", "split", "quantile", "k", "neighbours", "anomalous_classes"],
        "report": ["sweep_dir"],
    }[command]
    for key in keys:
        assert f"  {key} " in shown, key
    assert "Example" in shown and "Outputs:" in shown
    assert "powered by Hydra" not in shown and "schema/" not in shown


def test_a_sweep_jobs_printed_command_works_when_pasted(tmp_path, data_dir):
    sweep = ["-m", *TINY_RUN, "trainer.max_epochs=1", "model.beta=1,4", "hydra.sweep.dir=sweep"]
    result = run_cli(sweep, tmp_path, data_dir)
    assert result.returncode == 0, result.stderr
    (printed, *_) = [
        line.removeprefix("Train it longer: ")
        for line in result.stdout.splitlines()
        if line.startswith("Train it longer: ")
    ]
    assert printed == ("betavae-train \"resume='sweep/0_model.beta=1'\" trainer.max_epochs=2")

    pasted = paste(printed, tmp_path, data_dir)

    assert pasted.returncode == 0, pasted.stderr
    assert "Trained 2 epochs" in pasted.stdout


def test_a_default_run_prints_no_line_twice_and_no_lightning_noise(tmp_path, data_dir):
    # The progress bar as configured by default; with output to a pipe, a line per epoch.
    default_bar = [arg for arg in TINY_RUN if not arg.startswith("trainer.enable_progress_bar")]
    result = run_cli([*default_bar, "trainer.max_epochs=2"], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == len(set(lines)), lines
    assert result.stderr == ""
    assert lines[0].startswith("Training a mlp VAE (latent 4, ")
    assert lines[1].startswith("Epoch 1/2: train/loss ")
    assert lines[2].startswith("Epoch 2/2: train/loss ")
    assert lines[3] == "Trained 2 epochs, 16 steps (nats/example):"
    assert not [line for line in lines if "INFO" in line or "FLOPs" in line]


def test_the_installed_scripts_end_with_their_apps_exit_status_and_all_their_output(
    tmp_path, data_dir
):
    """The console scripts end their process at once once the app is done: the status and
    every line still come out."""
    mistake = run_process(["model.latent_dim=-3"], tmp_path, data_dir)
    help_text = run_process(["--help"], tmp_path, data_dir, script="betavae-report")

    assert mistake.returncode == 2
    assert mistake.stderr.strip() == (
        "betavae-train: error: model.latent_dim=-3 is not allowed: an integer >= 1"
    )
    assert help_text.returncode == 0
    assert help_text.stdout.split()[-3:] == [
        "Example:",
        "betavae-report",
        "multirun/2026-11-21/12-31-02",
    ]
