"""The apps that use a trained model (betavae-eval, -sample, -encode, -score): their console
scripts, opening the run from the config, and naming their results.

The console scripts import only Hydra and the schemas, so that `--help` and a mistake in the
config answer at once; each app's task (torch and all) is imported once the config is valid.
"""

import dataclasses
import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from betavae.apps import help
from betavae.apps.cli import exit_on_user_error, run_app
from betavae.config.model_apps import register_usage_schemas
from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas, validate
from betavae.errors import UserError
from betavae.lifecycle.layout import BEST_CHECKPOINT, locate_run
from betavae.user_paths import shown_path

if TYPE_CHECKING:
    from betavae.loading import LoadedRun

register_schemas()
register_usage_schemas()


def open_run(cfg: DictConfig) -> "LoadedRun":
    """Seed, and load the model; fails before any file is written."""
    import torch

    from betavae.loading import load_run

    torch.manual_seed(cfg.seed)
    return load_run(cfg.run)


def other_data(cfg: DictConfig) -> bool:
    """Whether `data=<group>` names another data set than the run's own."""
    return "_target_" in cfg.data


def data_split(cfg: DictConfig) -> str:
    """The split to use: as given; else the test split of the run's own data, and every
    example of another data set (a folder of one's own images is scored whole)."""
    if cfg.split is not None:
        return cfg.split
    return "all" if other_data(cfg) else "test"


def examples(count: int, split: str) -> str:
    """`2000 test examples`, or `all 20 examples` for split=all."""
    return f"all {count} examples" if split == "all" else f"{count} {split} examples"


def results_stem(cfg: DictConfig) -> str:
    """`<split>` on the run's own data, `<data set>-<split>` on another (`data=...`), so results
    on different data sets sit side by side instead of overwriting each other."""
    if not other_data(cfg):
        return data_split(cfg)
    data_name = cfg.data._target_.rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    return f"{data_name}-{data_split(cfg)}"


def variant(cfg: DictConfig, keys: Iterable[str]) -> str:
    """`-key=value` for each of `keys` (options that change a result) not at its default, so
    that results of different options get different names: `test-knn-neighbours=10.csv`."""
    defaults = {f.name: f.default for f in dataclasses.fields(OmegaConf.get_type(cfg))}
    return "".join(f"-{key}={_shown(cfg[key])}" for key in keys if cfg[key] != defaults[key])


def _shown(value: object) -> str:
    if OmegaConf.is_list(value) or isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def results_folder(run_dir: Path, checkpoint: Path, name: str) -> Path:
    """Where an app writes: `<run>/<name>` for the best checkpoint, else one per checkpoint
    (`<name>-last`), so results of different checkpoints never overwrite each other."""
    if checkpoint.resolve() == (run_dir / BEST_CHECKPOINT).resolve():
        return run_dir / name
    return run_dir / f"{name}-{checkpoint.stem}"


def eval_names(cfg: DictConfig) -> dict[str, str]:
    # The run's own test split with the default options is the usual case: the plain name.
    stem = f"{results_stem(cfg)}{variant(cfg, ['k', 'seed'])}"
    return {"metrics": "metrics.json" if stem == "test" else f"metrics-{stem}.json"}


def sample_names(cfg: DictConfig) -> dict[str, str]:
    names = {"prior": f"prior{variant(cfg, ['n', 'seed'])}.png"}
    if cfg.traverse:
        names["traversal"] = f"traversal{variant(cfg, ['span', 'steps'])}.png"
    if cfg.interpolate:
        names["interpolation"] = f"interpolation{variant(cfg, ['steps', 'pairs'])}.png"
    return names


def encode_names(cfg: DictConfig) -> dict[str, str]:
    return {"latents": f"{results_stem(cfg)}.npz", "scatter": f"{results_stem(cfg)}_scatter.png"}


def score_names(cfg: DictConfig) -> dict[str, str]:
    name = f"{results_stem(cfg)}-{cfg.score}{variant(cfg, _score_options(cfg.score))}"
    return {"table": f"{name}.csv", "summary": f"{name}.json"}


def _score_options(score: str) -> list[str]:
    """The options that change the scores of `score` (the seed draws the posterior samples)."""
    options = ["quantile", "anomalous_classes"]
    if score == "knn":
        return [*options, "neighbours"]
    return [*options, "seed", *(["k"] if score == "iwae" else [])]


def new_results(cfg: DictConfig, folder: str, names: dict[str, str]) -> dict[str, Path]:
    """The paths of the files an app is about to write, by kind, in its `folder` of the run.

    A result file is never replaced by another computation under its name without asking: the
    same name means the same options, but the run's checkpoint may have changed since. Checked
    without torch, so that it is said at once.
    """
    run_dir, checkpoint = locate_run(cfg.run)
    paths = {
        kind: results_folder(run_dir, checkpoint, folder) / name for kind, name in names.items()
    }
    taken = [path for path in paths.values() if path.exists()]
    if taken and not cfg.overwrite:
        raise UserError(
            f"{shown_path(taken[0])} exists already (this command, run before); pass "
            "overwrite=true to replace it, or change an option to write another variant"
        )
    return paths


def usage_main(
    config_name: str,
    app_name: str,
    task: str,
    app_help: help.AppHelp,
    results: tuple[str, Callable[[DictConfig], dict[str, str]]],
) -> Callable[[], None]:
    """The console-script `main` of an app: the function `task` ("module:function") on the
    composed `conf/<config_name>.yaml` and the paths it writes (`results`: its folder in the
    run and the names of its files), with every user mistake, at composition or inside the
    task, reported as one line."""
    folder, names = results

    @hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    def _hydra_main(cfg: DictConfig) -> None:
        with exit_on_user_error(app_name):
            validate(cfg)
            paths = new_results(cfg, folder, names(cfg))  # said at once, before torch is imported
            module, function = task.split(":")
            getattr(importlib.import_module(module), function)(cfg, paths)

    def main() -> None:
        run_app(_hydra_main, app_name, lambda: help.render(app_name, config_name, app_help))

    return main


eval_main = usage_main(
    "eval", "betavae-eval", "betavae.apps.evaluate:evaluate", help.EVAL, ("eval", eval_names)
)
sample_main = usage_main(
    "sample", "betavae-sample", "betavae.apps.sample:sample", help.SAMPLE, ("samples", sample_names)
)
encode_main = usage_main(
    "encode", "betavae-encode", "betavae.apps.encode:encode", help.ENCODE, ("latents", encode_names)
)
score_main = usage_main(
    "score", "betavae-score", "betavae.apps.score:score", help.SCORE, ("scores", score_names)
)
