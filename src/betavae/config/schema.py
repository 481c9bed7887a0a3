"""Structured-config schemas: the one place where every key's type, default and range live.

Hydra merges the YAML files in `conf/` onto these dataclasses, so a value of the wrong type
fails while the config is composed, before any run directory exists. Ranges are checked in
`__post_init__`, which runs when `validate` turns the composed config into these objects.
Each check raises a `UserError` naming the full key, the bad value and what is allowed.
"""

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from betavae.config.paths import config_dir
from betavae.errors import UserError
from betavae.evaluation.disentanglement_names import DISENTANGLEMENT_SCORES, SAMPLES

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
STRATEGIES = ("auto", "single_device", "ddp", "ddp_spawn")
NETWORKS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
SCHEDULERS = ("none", "cosine", "plateau")
# beta: recon + β·KL; capacity: recon + γ·|KL − C| (Burgess et al. 2018); beta_tc: β-TCVAE
# (Chen et al. 2018); factor_vae: FactorVAE (Kim & Mnih 2018); dip_vae_i, dip_vae_ii: DIP-VAE
# (Kumar et al. 2018); m2: Kingma et al. (2014)'s semi-supervised M2, a class beside z. Their
# losses are in betavae.vae.objectives, .total_correlation, .factor_vae, .dip and .m2_objectives.
OBJECTIVES = ("beta", "capacity", "beta_tc", "factor_vae", "dip_vae_i", "dip_vae_ii", "m2")
# Numbers in a run's metrics.json that `optimized_metric` may hand to a sweeper: the last
# epoch's val/*, the best checkpoint's test/*, and the best epoch's val/elbo.
OPTIMIZABLE_METRICS = (
    *(f"{stage}/{m}" for stage in ("val", "test") for m in ("elbo", "recon", "kl", "loss")),
    "best_val_elbo",
)


class _Checked:
    """Mixin giving each schema a `_require` that reports the key by its full dotted path."""

    section: ClassVar[str]

    def _require(self, ok: bool, key: str, allowed: str) -> None:
        if not ok:
            value = getattr(self, key)
            name = f"{self.section}.{key}" if self.section else key
            raise UserError(f"{name}={value!r} is not allowed: {allowed}")

    def _require_counts(self, *keys: str) -> None:
        """Each of `keys` is a count of something (epochs, steps, images): at least 1."""
        for key in keys:
            self._require(getattr(self, key) >= 1, key, "an integer >= 1")

    def _require_positive_ints(self, key: str, values: Sequence[int], allow_empty: bool) -> None:
        ok = (allow_empty or len(values) > 0) and all(v >= 1 for v in values)
        self._require(ok, key, "a list of integers >= 1, e.g. [400]")


@dataclass
class ModelConfig(_Checked):
    """What every network shares: the latent space, the likelihood, the objective and the
    optimizer. β weighs the KL (objective beta) or the total correlation (beta_tc); the
    capacity_* keys belong to objective capacity, factor_vae_gamma to factor_vae, the dip_*
    keys to dip_vae_i and dip_vae_ii, and m2_alpha to m2 (these use no β)."""

    section: ClassVar[str] = "model"
    network: str = MISSING
    latent_dim: int = 10
    hidden_dims: list[int] = field(default_factory=lambda: [400])
    likelihood: str = "bernoulli"
    gaussian_std: float = 0.1
    learn_gaussian_std: bool = False
    objective: str = "beta"
    beta: float = 1.0
    beta_warmup_steps: int = 0
    capacity_gamma: float = 1000.0
    capacity_max: float = 25.0
    capacity_steps: int = 100_000
    factor_vae_gamma: float = 10.0
    dip_lambda_od: float = 1.0
    # None: Kumar et al.'s choice, 10·dip_lambda_od for dip_vae_i and dip_lambda_od for dip_vae_ii.
    dip_lambda_d: float | None = None
    # The weight of the labelled images' −log q(y|x), per example: Kingma et al.'s α = 0.1·N.
    m2_alpha: float = 0.1
    lr: float = 1e-3
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    scheduler: str = "none"

    def __post_init__(self) -> None:
        self._require(self.network in NETWORKS, "network", f"one of {', '.join(NETWORKS)}")
        self._require_counts("latent_dim")
        self._require_positive_ints("hidden_dims", self.hidden_dims, allow_empty=True)
        self._require(self.likelihood in LIKELIHOODS, "likelihood", " or ".join(LIKELIHOODS))
        self._require(self.gaussian_std > 0, "gaussian_std", "a number > 0")
        self._require(self.objective in OBJECTIVES, "objective", f"one of {', '.join(OBJECTIVES)}")
        self._require(self.beta >= 0, "beta", "a number >= 0")
        self._require(self.beta_warmup_steps >= 0, "beta_warmup_steps", "an integer >= 0")
        self._require(self.capacity_gamma > 0, "capacity_gamma", "a number > 0")
        self._require(self.capacity_max >= 0, "capacity_max", "a number >= 0 (nats)")
        self._require(self.capacity_steps >= 0, "capacity_steps", "an integer >= 0")
        self._require(self.factor_vae_gamma >= 0, "factor_vae_gamma", "a number >= 0")
        self._require(self.dip_lambda_od >= 0, "dip_lambda_od", "a number >= 0")
        lambda_d_ok = self.dip_lambda_d is None or self.dip_lambda_d >= 0
        paper = "null (the paper's 10·dip_lambda_od for dip_vae_i, dip_lambda_od for dip_vae_ii)"
        self._require(lambda_d_ok, "dip_lambda_d", f"{paper} or a number >= 0")
        self._require(self.m2_alpha >= 0, "m2_alpha", "a number >= 0")
        self._require(self.lr > 0, "lr", "a number > 0")
        betas_ok = len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas)
        self._require(betas_ok, "adam_betas", "two numbers in [0, 1), e.g. [0.9, 0.999]")
        self._require(self.weight_decay >= 0, "weight_decay", "a number >= 0")
        self._require(self.scheduler in SCHEDULERS, "scheduler", f"one of {', '.join(SCHEDULERS)}")


@dataclass
class MLPModelConfig(ModelConfig):
    network: str = "mlp"


@dataclass
class ConvModelConfig(ModelConfig):
    network: str = "conv"
    channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64])
    channels_last: bool = False
    hidden_dims: list[int] = field(default_factory=lambda: [256])
    # M2 (objective m2): q(y|x) reads the conv layers of q(z|x,y), trained by every image's
    # bound, instead of conv layers of its own that only the labelled images train.
    m2_shared_convs: bool = True
    # M2: the hidden layers of q(y|x)'s head on the conv features; [] is a linear head, which
    # learns a few labelled images less by heart than a hidden layer does.
    m2_head_dims: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require_positive_ints("channels", self.channels, allow_empty=False)
        self._require_positive_ints("m2_head_dims", self.m2_head_dims, allow_empty=True)


@dataclass
class DataConfig(_Checked):
    """Keys every data set shares; `_target_` names its LightningDataModule."""

    section: ClassVar[str] = "data"
    _target_: str = MISSING
    batch_size: int = 128
    num_workers: int = 2
    val_fraction: float = 0.1
    split_seed: int = 0
    # Classes left out of every split, e.g. to train on normal classes only (for sprites: shapes).
    exclude_classes: list[int] = field(default_factory=list)
    # Semi-supervised training (model.objective=m2): this many labelled training images per
    # class, chosen by label_seed; the rest of the training split is unlabelled.
    labels_per_class: int | None = None
    label_seed: int = 0

    def __post_init__(self) -> None:
        self._require_counts("batch_size")
        self._require(self.num_workers >= 0, "num_workers", "an integer >= 0")
        self._require(0 < self.val_fraction < 1, "val_fraction", "a number in (0, 1)")
        self._require(
            self.labels_per_class is None or self.labels_per_class >= 1,
            "labels_per_class",
            "null (no labelled images) or an integer >= 1",
        )


@dataclass
class _HeldOutTestConfig(DataConfig):
    """Data sets without an official test split carve one out, like the validation split."""

    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(0 < self.test_fraction < 1, "test_fraction", "a number in (0, 1)")
        total_ok = self.val_fraction + self.test_fraction < 1
        self._require(total_ok, "test_fraction", "val_fraction + test_fraction must be < 1")


def _check_image_size(config: _Checked, image_size: int) -> None:
    config._require(image_size >= 8, "image_size", "an integer >= 8")


@dataclass
class SpritesDataConfig(_HeldOutTestConfig):
    data_dir: str = MISSING
    num_workers: int = 0
    num_examples: int = 20000
    image_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(self.num_examples >= 10, "num_examples", "an integer >= 10")
        _check_image_size(self, self.image_size)


@dataclass
class FactorGridDataConfig(_HeldOutTestConfig):
    """dSprites, 3D Shapes and MPI3D, read from their published files."""

    path: str = MISSING
    # Images of the file used, chosen by `seed`; null: all of them.
    num_examples: int | None = None
    image_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        count = self.num_examples
        allowed = "null (all) or an integer >= 10"
        self._require(count is None or count >= 10, "num_examples", allowed)
        # The files hold 64x64 images: smaller sizes average blocks of pixels.
        self._require(8 <= self.image_size <= 64, "image_size", "an integer from 8 to 64")


@dataclass
class DigitsDataConfig(_HeldOutTestConfig):
    num_workers: int = 0
    image_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_size(self, self.image_size)


@dataclass
class TorchvisionDataConfig(DataConfig):
    data_dir: str = MISSING
    download: bool = False


@dataclass
class CelebADataConfig(TorchvisionDataConfig):
    image_size: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_size(self, self.image_size)


@dataclass
class ImageFolderDataConfig(_HeldOutTestConfig):
    path: str = MISSING
    image_size: int = 64
    channels: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_size(self, self.image_size)
        self._require(self.channels in (1, 3), "channels", "1 (grayscale) or 3 (RGB)")


@dataclass
class TrainerConfig(_Checked):
    """The subset of `lightning.Trainer` arguments a run is configured with."""

    section: ClassVar[str] = "trainer"
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    max_epochs: int = 10
    gradient_clip_val: float | None = None
    log_every_n_steps: int | None = None
    check_val_every_n_epoch: int = 1
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    num_sanity_val_steps: int = 0
    deterministic: bool = False
    enable_progress_bar: bool = True

    def __post_init__(self) -> None:
        self._require_counts("max_epochs", "num_nodes")
        steps = self.log_every_n_steps
        self._require(steps is None or steps >= 1, "log_every_n_steps", "null or an integer >= 1")
        self._require_counts("check_val_every_n_epoch")
        sanity = self.num_sanity_val_steps
        self._require(sanity >= 0, "num_sanity_val_steps", "an integer >= 0 (batches)")
        validates = self.check_val_every_n_epoch <= self.max_epochs
        never = "a run that never validates has no best checkpoint"
        allowed = f"at most trainer.max_epochs ({self.max_epochs}): {never}"
        self._require(validates, "check_val_every_n_epoch", allowed)
        self._require(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}")
        accelerators = ", ".join(ACCELERATORS)
        self._require(self.accelerator in ACCELERATORS, "accelerator", f"one of {accelerators}")
        self._require(self.strategy in STRATEGIES, "strategy", f"one of {', '.join(STRATEGIES)}")
        self._require(_is_devices(self.devices), "devices", _DEVICES_HELP)
        clip = self.gradient_clip_val
        self._require(clip is None or clip > 0, "gradient_clip_val", "null or a number > 0")
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            self._require(_is_batch_limit(getattr(self, key)), key, _BATCH_LIMIT_HELP)


_BATCH_LIMIT_HELP = "null (all), an integer >= 1 (batches) or a fraction in (0, 1]"
_DEVICES_HELP = "auto, -1 (all), a count >= 1, or a list of GPU indices such as [0, 2]"


def _is_devices(value: Any) -> bool:
    if value in ("auto", -1):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1
    is_list = isinstance(value, list) or OmegaConf.is_list(value)
    return is_list and len(value) > 0 and all(isinstance(v, int) and v >= 0 for v in value)


def _is_batch_limit(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1
    return isinstance(value, float) and 0 < value <= 1


@dataclass
class CheckpointConfig(_Checked):
    section: ClassVar[str] = "callbacks.checkpoint"
    every_n_train_steps: int | None = None
    every_n_minutes: float | None = None

    def __post_init__(self) -> None:
        steps, minutes = self.every_n_train_steps, self.every_n_minutes
        self._require(steps is None or steps >= 1, "every_n_train_steps", "null or an integer >= 1")
        self._require(minutes is None or minutes > 0, "every_n_minutes", "null or a number > 0")


def _require_epochs_or_auto(config: _Checked) -> None:
    every = config.every_n_epochs
    allowed = "null (as often as a 2% share of the run's time allows) or an integer >= 1"
    config._require(every is None or every >= 1, "every_n_epochs", allowed)


@dataclass
class ImagesConfig(_Checked):
    section: ClassVar[str] = "callbacks.images"
    every_n_epochs: int | None = None
    num_reconstructions: int = 8
    num_samples: int = 64

    def __post_init__(self) -> None:
        _require_epochs_or_auto(self)
        self._require_counts("num_reconstructions", "num_samples")


@dataclass
class ProgressBarConfig(_Checked):
    section: ClassVar[str] = "callbacks.progress_bar"
    refresh_rate: int = 10

    def __post_init__(self) -> None:
        self._require_counts("refresh_rate")


@dataclass
class TraversalsConfig(_Checked):
    section: ClassVar[str] = "callbacks.traversals"
    every_n_epochs: int | None = None
    span: float = 3.0
    steps: int = 10

    def __post_init__(self) -> None:
        _require_epochs_or_auto(self)
        self._require(self.span > 0, "span", "a number > 0 (each dimension sweeps -span..span)")
        self._require(self.steps >= 2, "steps", "an integer >= 2")


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    progress_bar: ProgressBarConfig = field(default_factory=ProgressBarConfig)
    traversals: TraversalsConfig = field(default_factory=TraversalsConfig)


def check_disentanglement_metrics(config: _Checked, metrics_key: str, samples_key: str) -> None:
    """Names of disentanglement metrics (`metrics_key`, a list) and how many examples they draw
    (`samples_key`): what both `betavae-train` and `betavae-eval` are given."""
    names = getattr(config, metrics_key) or []
    unknown = [name for name in names if name not in DISENTANGLEMENT_SCORES]
    allowed = f"a list of any of {', '.join(DISENTANGLEMENT_SCORES)}, e.g. [mig,sap]"
    config._require(not unknown, metrics_key, f"{', '.join(unknown)}: no such metric; {allowed}")
    samples = " or ".join(f"{name} ({counts} examples)" for name, counts in SAMPLES.items())
    config._require(getattr(config, samples_key) in SAMPLES, samples_key, samples)


@dataclass
class EvaluationConfig(_Checked):
    """What a run measures of its best checkpoint at the end besides the ELBO: disentanglement
    metrics, on data with generative factors, as `test/<name>` in metrics.json."""

    section: ClassVar[str] = "evaluation"
    test_metrics: list[str] = field(default_factory=lambda: ["mig"])
    samples: str = "quick"

    def __post_init__(self) -> None:
        check_disentanglement_metrics(self, "test_metrics", "samples")


@dataclass
class PathsConfig:
    output_dir: str = "outputs"
    multirun_dir: str = "multirun"
    data_dir: str = MISSING


@dataclass
class TrainConfig(_Checked):
    """The root of `conf/train.yaml`: data and model are typed by their own group's schema."""

    section: ClassVar[str] = ""

    data: Any = MISSING
    model: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = MISSING
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    resume: str | None = None
    ckpt_path: str | None = None
    optimized_metric: str = "val/elbo"

    def __post_init__(self) -> None:
        allowed = f"one of {', '.join(OPTIMIZABLE_METRICS)}"
        self._require(self.optimized_metric in OPTIMIZABLE_METRICS, "optimized_metric", allowed)
        labels = self.data.labels_per_class
        if self.model.objective == "m2" and labels is None:
            raise UserError(
                "model.objective=m2 learns from labelled and unlabelled images: set "
                "data.labels_per_class=N, the labelled training images per class"
            )
        if self.model.objective != "m2" and labels is not None:
            raise UserError(
                f"data.labels_per_class={labels}: only model.objective=m2 trains on labels; "
                f"remove it (for a VAE's few-label probes: betavae-eval labels_per_class={labels})"
            )


# The schemas of the config groups whose options differ in their keys, by the name a `conf/`
# option's defaults list gives (`- /schema/<group>/<name>@_here_`).
GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"mlp": MLPModelConfig, "conv": ConvModelConfig},
    "data": {
        "sprites": SpritesDataConfig,
        "digits": DigitsDataConfig,
        "torchvision": TorchvisionDataConfig,
        "celeba": CelebADataConfig,
        "image_folder": ImageFolderDataConfig,
        "factor_grid": FactorGridDataConfig,
    },
}


def register_schemas() -> None:
    """Make the schemas visible to Hydra; `conf/` files extend them via `/schema/...` defaults."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=node)


def group_options_with_key(group: str, key: str) -> list[str]:
    """The options of `conf/<group>/` whose schema has `key`, e.g. ["conv"] for the model's
    `channels`: where a key belongs when the chosen option lacks it."""
    schemas = GROUP_SCHEMAS.get(group)
    if schemas is None:
        return []
    having = {name for name, schema in schemas.items() if key in _field_names(schema)}
    options = []
    for option in sorted(config_dir().joinpath(group).glob("*.yaml")):
        for default in OmegaConf.load(option).get("defaults", []):
            if str(default).removeprefix(f"/schema/{group}/").removesuffix("@_here_") in having:
                options.append(option.stem)
    return options


def _field_names(schema: type) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)}


# Each data module's schema, for a data config that is checked on its own (the usage apps
# change a run's saved data config with +data.<key>=...).
DATA_SCHEMAS: dict[str, type[DataConfig]] = {
    "betavae.data.SpritesDataModule": SpritesDataConfig,
    "betavae.data.DigitsDataModule": DigitsDataConfig,
    "betavae.data.MNISTDataModule": TorchvisionDataConfig,
    "betavae.data.FashionMNISTDataModule": TorchvisionDataConfig,
    "betavae.data.CIFAR10DataModule": TorchvisionDataConfig,
    "betavae.data.CelebADataModule": CelebADataConfig,
    "betavae.data.ImageFolderDataModule": ImageFolderDataConfig,
    "betavae.data.DSpritesDataModule": FactorGridDataConfig,
    "betavae.data.Shapes3DDataModule": FactorGridDataConfig,
    "betavae.data.MPI3DDataModule": FactorGridDataConfig,
}


def validate_data(data: DictConfig) -> None:
    """Check a data config against its data module's schema: keys, types and ranges."""
    schema = DATA_SCHEMAS.get(data.get("_target_"))
    if schema is None:
        raise UserError(f"data._target_={data.get('_target_')}: not a betavae data set")
    _reject_keys_outside(data, schema, "data.")
    OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), data))


def validate(cfg: DictConfig) -> Any:
    """Run every range check; the composed config has already been type-checked by Hydra.

    Keys a schema does not know are refused too: Hydra lets `+model.foo=1` add them, and they
    would otherwise reach a constructor as unexpected arguments, or be silently ignored.
    """
    reject_unknown_keys(cfg)
    return OmegaConf.to_object(cfg)


def reject_unknown_keys(node: DictConfig, prefix: str = "") -> None:
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        _reject_keys_outside(node, schema, prefix)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            reject_unknown_keys(child, f"{prefix}{key}.")


def _reject_keys_outside(node: DictConfig, schema: type, prefix: str) -> None:
    known = [f.name for f in dataclasses.fields(schema)]
    for key in node:
        if key not in known:
            raise UserError(unknown_key_message(f"{prefix}{key}", schema, prefix))


def unknown_key_message(key: str, schema: type, prefix: str) -> str:
    """`<key>: no such key; did you mean …? (<section> has …)`, or for a key of another model
    or data option `<key>: only model=conv has this key; …`: the fix, not only the fault."""
    known = [f.name for f in dataclasses.fields(schema)]
    name = key.removeprefix(prefix)
    section = prefix.rstrip(".") or "the config"
    elsewhere = [f"{section}={option}" for option in group_options_with_key(section, name)]
    if len(elsewhere) == 1:
        return f"{key}: only {elsewhere[0]} has this key; add {elsewhere[0]}, or leave {key} out"
    if elsewhere:
        listed = f"{', '.join(elsewhere[:-1])} and {elsewhere[-1]}"
        return f"{key}: only {listed} have this key; choose one of them, or leave {key} out"
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    listed = ", ".join(k for k in known if not k.startswith("_"))
    return f"{key}: no such key{hint} ({section} has {listed})"
