"""`--help` of each command: what it does, its main keys with their defaults and allowed values,
two examples, and where its outputs go.

Hydra's own `--help` lists its internal config groups and takes seconds to compose every one of
them; this text is made from the app's composed config (for the defaults) and the `conf/`
folders (for each group's options), in well under a second. `--hydra-help` still shows Hydra's.
"""

import textwrap
from dataclasses import dataclass, field

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from betavae.config.model_apps import SCORES, SPLITS
from betavae.config.paths import config_dir
from betavae.config.schema import ACCELERATORS, OBJECTIVES, PRECISIONS
from betavae.evaluation.disentanglement_names import DISENTANGLEMENT_SCORES, SAMPLES

WIDTH = 100
PRECISION_CHOICES = " | ".join(PRECISIONS)
SPLIT_CHOICES = " | ".join(SPLITS)
SAMPLE_CHOICES = " | ".join(f"{name} ({counts})" for name, counts in SAMPLES.items())


@dataclass
class AppHelp:
    usage: str
    about: str
    keys: list[tuple[str, str]]
    """(key, what it is or allows); its default comes from the composed config."""
    examples: list[str]
    outputs: str
    groups: list[str] = field(default_factory=list)
    """Config groups whose options are listed (folders of conf/)."""


def _options(group: str) -> str:
    folder = config_dir() / group
    names = sorted(path.stem for path in folder.glob("*.yaml") if not path.stem.startswith("_"))
    return " | ".join(names)


def _default(cfg: DictConfig, key: str) -> str:
    value = OmegaConf.select(cfg, key, default="")
    if OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value))
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def render(app_name: str, config_name: str, spec: AppHelp) -> str:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose(config_name)
    GlobalHydra.instance().clear()
    lines = [f"usage: {spec.usage}", "", textwrap.fill(spec.about, WIDTH), ""]
    if spec.groups:
        lines.append("Groups (group=option):")
        width = max(len(group) for group in spec.groups) + 1
        for group in spec.groups:
            lines.append(f"  {group + '=':<{width + 1}} {_options(group)}")
        lines.append("")
    lines.append("Keys (key=value; default in brackets):")
    width = max(len(key) for key, _ in spec.keys)
    for key, meaning in spec.keys:
        default = _default(cfg, key)
        shown = f" [{default}]" if default not in ("", "{}") else ""
        lines.append(f"  {key:<{width}}  {meaning}{shown}")
    lines += ["", "Examples:", *(f"  {example}" for example in spec.examples), ""]
    lines += [textwrap.fill(f"Outputs: {spec.outputs}", WIDTH), ""]
    closing = (
        f"Every key of the config: {app_name} --cfg job. A mistake ends in one line naming the "
        "key, and exit status 2."
    )
    lines.append(textwrap.fill(closing, WIDTH))
    return "\n".join(lines)


TRAIN = AppHelp(
    usage="betavae-train [-m] [group=option ...] [key=value ...]",
    about=(
        "Train a beta-VAE on a data set, test its best checkpoint, and report the negative ELBO "
        "and its two terms (nats per example). With -m, a sweep: one job per combination of the "
        "comma-separated values given (model.beta=1,4)."
    ),
    groups=[
        "data",
        "model",
        "objective",
        "trainer",
        "experiment",
        "hparams_search",
        "hydra/launcher",
    ],
    keys=[
        ("model.latent_dim", "size of the latent space"),
        ("model.beta", "weight of the KL term (1: the plain VAE)"),
        ("model.beta_warmup_steps", "steps over which beta rises from 0"),
        ("model.likelihood", "bernoulli | gaussian"),
        ("model.objective", f"{' | '.join(OBJECTIVES)} (m2: semi-supervised)"),
        ("model.m2_alpha", "weight of q(y|x)'s cross-entropy on the labelled images (m2)"),
        ("model.lr", "Adam's learning rate"),
        ("data.num_examples", "sprites drawn (data=sprites)"),
        ("data.image_size", "image height and width (sprites, image_folder)"),
        ("data.batch_size", "examples per step"),
        ("data.exclude_classes", "classes left out, e.g. [0] (to score them later)"),
        ("data.labels_per_class", "labelled training images per class (model.objective=m2)"),
        ("trainer.max_epochs", "epochs to train"),
        ("trainer.precision", PRECISION_CHOICES),
        ("trainer.accelerator", " | ".join(ACCELERATORS)),
        ("trainer.devices", "auto | a count | GPU indices [0,1]"),
        ("callbacks.checkpoint.every_n_train_steps", "also save last.ckpt every N steps"),
        ("callbacks.checkpoint.every_n_minutes", "also save last.ckpt every N minutes"),
        ("evaluation.test_metrics", "disentanglement metrics at the end, e.g. [mig,sap]"),
        ("evaluation.samples", f"examples they draw: {SAMPLE_CHOICES}"),
        ("seed", "seed of weights, noise and data order"),
        ("resume", "a run directory to continue, or auto (a sweep, with -m)"),
        ("ckpt_path", "a checkpoint to start a new run from"),
    ],
    examples=[
        "betavae-train model=conv model.latent_dim=10 model.beta=4 trainer.max_epochs=20",
        "betavae-train -m model.latent_dim=2,8,32 model.beta=0.5,1,4",
    ],
    outputs=(
        "outputs/<date>/<time>/ (config.yaml, checkpoints/best.ckpt and last.ckpt, TensorBoard "
        "event files, metrics.json, train.log); a sweep: multirun/<date>/<time>/<job>/."
    ),
)

_RUN = ("run", "a run directory (its best checkpoint), or a .ckpt inside its checkpoints/")
_DATA = (
    "data",
    "another data set (data=image_folder data.path=$HOME/pictures); default: the run's own",
)
_SPLIT = ("split", f"{SPLIT_CHOICES}; null: test, or all of data=<other>")
_SEED = ("seed", "seed of the samples drawn")
_OVERWRITE = ("overwrite", "replace a result of the same name (the same options)")

EVAL = AppHelp(
    usage="betavae-eval run=<run dir> [key=value ...]",
    about=(
        "Measure a trained model on one split: the negative ELBO and its terms in nats and bits "
        "per dimension, -log p(x) from the importance-weighted bound, KL per latent dimension "
        "and active units, label probes, and on data with generative factors (sprites, dsprites, "
        "shapes3d, mpi3d) the Mutual Information Gap of the split and the disentanglement "
        f"metrics as disentanglement_lib defines them ({', '.join(DISENTANGLEMENT_SCORES)}), on "
        "examples drawn afresh from the factors."
    ),
    keys=[
        _RUN,
        _SPLIT,
        ("k", "importance samples per example for -log p(x)"),
        ("metrics", "disentanglement metrics, e.g. [mig,sap]; null: all nine"),
        ("samples", f"examples they draw: {SAMPLE_CHOICES}"),
        ("labels_per_class", "few-label probes on mu and on pixels, N labels per class"),
        ("label_seeds", "the seeds of the labelled sets (mean and sd over them)"),
        _SEED,
        _OVERWRITE,
    ],
    examples=[
        "betavae-eval run=outputs/2026-11-21/15-28-47",
        "betavae-eval run=outputs/2026-11-21/15-28-47 'metrics=[mig,sap]' samples=paper",
        "betavae-eval run=outputs/2026-11-21/15-28-47 labels_per_class=10",
    ],
    outputs="<run>/eval/metrics.json (other options: metrics-<split>-<option>=<value>.json).",
)

SAMPLE = AppHelp(
    usage="betavae-sample run=<run dir> [key=value ...]",
    about=(
        "Draw pictures from a trained model: samples from the prior, a latent traversal (one "
        "row per dimension, most KL first) and interpolations between test images."
    ),
    keys=[
        _RUN,
        ("n", "samples from the prior"),
        ("traverse", "true | false: write the traversal"),
        ("span", "each dimension is swept over [-span, span]"),
        ("steps", "pictures per traversal or interpolation row"),
        ("interpolate", "true | false: write the interpolations"),
        ("pairs", "interpolation rows"),
        _SEED,
        _OVERWRITE,
    ],
    examples=[
        "betavae-sample run=outputs/2026-11-21/15-28-47",
        "betavae-sample run=outputs/2026-11-21/15-28-47 n=16 traverse=false interpolate=false",
    ],
    outputs="<run>/samples/prior.png, traversal.png, interpolation.png (options in the name).",
)

ENCODE = AppHelp(
    usage="betavae-encode run=<run dir> [key=value ...]",
    about=(
        "Encode every example of a split: the posterior means and log-variances, with labels or "
        "generative factors, for numpy.load; and a 2-D scatter of the means."
    ),
    keys=[_RUN, _SPLIT, _DATA, _OVERWRITE],
    examples=[
        "betavae-encode run=outputs/2026-11-21/15-28-47",
        "betavae-encode run=outputs/2026-11-21/15-28-47 split=train",
    ],
    outputs="<run>/latents/<split>.npz and <split>_scatter.png.",
)

SCORE = AppHelp(
    usage="betavae-score run=<run dir> [key=value ...]",
    about=(
        "Score every example of a split for anomaly (higher = more anomalous), flag those above a "
        "quantile of the run's validation scores, and measure AUROC and AUPRC when the anomalous "
        "classes are known (by default the classes the run left out of training)."
    ),
    keys=[
        _RUN,
        ("score", " | ".join(SCORES)),
        _SPLIT,
        ("quantile", "flag scores above this quantile of the validation scores"),
        ("k", "importance samples (score=iwae)"),
        ("neighbours", "nearest training encodings (score=knn)"),
        ("anomalous_classes", "classes counted as anomalies, e.g. [0]; null: the run's excluded"),
        _DATA,
        _SEED,
        _OVERWRITE,
    ],
    examples=[
        "betavae-score run=outputs/2026-11-21/15-28-47 score=knn",
        "betavae-score run=outputs/2026-11-21/15-28-47 data=image_folder "
        "data.path=$HOME/pictures data.channels=1 data.image_size=64",
    ],
    outputs="<run>/scores/<split>-<score>.csv (one row per example) and .json (the summary).",
)
