"""The apps that use a trained model (betavae-eval, -sample, -encode, -score): their console
scripts, opening the run from the config, and the names of their results (`result_files`).

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
from betavae.apps.result_files import ResultFile, Results
from betavae.config.model_apps import register_usage_schemas
from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas, validate
from betavae.lifecycle.commands import hydra_value
from betavae.lifecycle.layout import BEST_CHECKPOINT, locate_run

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
    defaults = {f.name: _default(f) for f in dataclasses.fields(OmegaConf.get_type(cfg))}
    return "".join(f"-{key}={_shown(cfg[key])}" for key in keys if cfg[key] != defaults[key])


def _default(option: dataclasses.Field) -> object:
    if option.default_factory is not dataclasses.MISSING:  # a list's default
        return option.default_factory()
    return option.default


def _shown(value: object) -> str:
    """As typed: `2` for the float 2.0, `0,1` for a list."""
    if OmegaConf.is_list(value) or isinstance(value, list):
        return ",".join(hydra_value(v) for v in value)
    return hydra_value(value)


def results_folder(run_dir: Path, checkpoint: Path, name: str) -> Path:
    """Where an app writes: `<run>/<name>` for the best checkpoint, else one per checkpoint
    (`<name>-last`), so results of different checkpoints never overwrite each other."""
    if checkpoint.resolve() == (run_dir / BEST_CHECKPOINT).resolve():
        return run_dir / name
    return run_dir / f"{name}-{checkpoint.stem}"


def eval_names(cfg: DictConfig) -> dict[str, ResultFile]:
    named = ["k", "seed", "metrics", "samples", "labels_per_class", "label_seeds"]
    options = ("split", *named)
    # The run's own test split with the default options is the usual case: the plain name.
    stem = f"{results_stem(cfg)}{variant(cfg, named)}"
    name = "metrics.json" if stem == "test" else f"metrics-{stem}.json"
    return {"metrics": ResultFile(name, options)}


def sample_names(cfg: DictConfig) -> dict[str, ResultFile]:
    names = {"prior": ResultFile(f"prior{variant(cfg, ['n', 'seed'])}.png", ("n", "seed"))}
    if cfg.traverse:
        traversal = ("span", "steps")
        names["traversal"] = ResultFile(f"traversal{variant(cfg, traversal)}.png", traversal)
    if cfg.interpolate:
        interpolation = ("steps", "pairs")
        name = f"interpolation{variant(cfg, interpolation)}.png"
        names["interpolation"] = ResultFile(name, interpolation)
    return names


def encode_names(cfg: DictConfig) -> dict[str, ResultFile]:
    stem = results_stem(cfg)
    return {
        "latents": ResultFile(f"{stem}.npz", ("split",)),
        "scatter": ResultFile(f"{stem}_scatter.png", ("split",)),
    }


def score_names(cfg: DictConfig) -> dict[str, ResultFile]:
    options = ("split", "score", *_score_options(cfg.score))
    name = f"{results_stem(cfg)}-{cfg.score}{variant(cfg, _score_options(cfg.score))}"
    return {
        "table": ResultFile(f"{name}.csv", options),
        "summary": ResultFile(f"{name}.json", options),
    }


def _score_options(score: str) -> list[str]:
    """The options that change the scores of `score` (the seed draws the posterior samples)."""
    options = ["quantile", "anomalous_classes"]
    if score == "knn":
        return [*options, "neighbours"]
    return [*options, "seed", *(["k"] if score == "iwae" else [])]


def model_app_main(
    config_name: str,
    app_name: str,
    task: str,
    app_help: help.AppHelp,
    results: tuple[str, Callable[[DictConfig], dict[str, ResultFile]]],
) -> Callable[[], None]:
    """The console-script `main` of an app: the function `task` ("module:function") on the
    composed `conf/<config_name>.yaml` and the files it writes (`results`: its folder in the
    run and its files by kind), with every user mistake, at composition or inside the task,
    reported as one line."""
    folder, names = results

    @hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    def _hydra_main(cfg: DictConfig) -> None:
        with exit_on_user_error(app_name):
            validate(cfg)
            run_dir, checkpoint = locate_run(cfg.run)  # said at once, before torch is imported
            files = Results(results_folder(run_dir, checkpoint, folder), names(cfg), cfg.overwrite)
            module, function = task.split(":")
            getattr(importlib.import_module(module), function)(cfg, files)

    def main() -> None:
        run_app(_hydra_main, app_name, lambda: help.render(app_name, config_name, app_help))

    return main


eval_main = model_app_main(
    "eval", "betavae-eval", "betavae.apps.evaluate:evaluate", help.EVAL, ("eval", eval_names)
)
sample_main = model_app_main(
    "sample", "betavae-sample", "betavae.apps.sample:sample", help.SAMPLE, ("samples", sample_names)
)
encode_main = model_app_main(
    "encode", "betavae-encode", "betavae.apps.encode:encode", help.ENCODE, ("latents", encode_names)
)
score_main = model_app_main(
    "score", "betavae-score", "betavae.apps.score:score", help.SCORE, ("scores", score_names)
)
