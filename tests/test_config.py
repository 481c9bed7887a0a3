"""Every config in conf/ composes and instantiates; bad values fail at start with one line."""

import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
from helpers import run_cli
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from betavae.config.paths import config_dir
from betavae.config.schema import group_options_with_key, validate
from betavae.errors import UserError
from betavae.training.callbacks import build_callbacks
from betavae.training.model_kinds import build_module
from betavae.vae import M2VAE


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("data", _options("data"))
@pytest.mark.parametrize("model", _options("model"))
def test_every_data_and_model_option_instantiates(compose_train, tmp_path, data, model):
    cfg = compose_train([f"data={data}", f"model={model}", f"paths.data_dir={tmp_path}"])
    if OmegaConf.is_missing(cfg.data, "path"):  # the user's own files, not read here
        cfg.data.path = str(tmp_path)
    validate(cfg)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg.model, datamodule)

    assert isinstance(datamodule, pl.LightningDataModule)
    assert module.hparams.network == model
    assert len(datamodule.image_shape) == 3


@pytest.mark.parametrize("group", ["model", "data"])
def test_a_key_the_chosen_option_lacks_is_traced_to_the_options_that_have_it(compose_train, group):
    """The refusal of `model.channels=...` on the MLP names model=conv: checked against what
    Hydra composes for every option, so a new option or key cannot fall out of it."""
    keys = {option: set(compose_train([f"{group}={option}"])[group]) for option in _options(group)}
    for key in set().union(*keys.values()):
        having = [option for option in _options(group) if key in keys[option]]
        assert group_options_with_key(group, key) == having, key
    assert group_options_with_key("model", "channels_last") == ["conv"]
    assert group_options_with_key("data", "no_such_key") == []


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes_and_validates(compose_train, experiment):
    cfg = compose_train([f"experiment={experiment}"])
    validate(cfg)
    assert cfg.model.network in ("mlp", "conv")


def test_the_study_preset_sweeps_four_objectives_at_three_weights_and_three_seeds(compose_train):
    cfg = compose_train(["experiment=sprites_study"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    weights: dict[str, list[float]] = {}
    for option in params.objective.split(","):
        model = compose_train(["experiment=sprites_study", f"objective={option}"]).model
        weight = {"factor_vae": "factor_vae_gamma", "dip_vae_i": "dip_lambda_od"}
        weights.setdefault(model.objective, []).append(model[weight.get(model.objective, "beta")])

    assert params.seed == "0,1,2"
    assert weights == {
        "beta": [1, 4, 8],
        "beta_tc": [4, 8, 16],
        "factor_vae": [10, 40, 100],
        "dip_vae_i": [1, 10, 50],
    }
    assert (cfg.data.image_size, cfg.model.network, cfg.trainer.max_epochs) == (32, "conv", 10)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")


@pytest.mark.parametrize("trainer", _options("trainer"))
def test_every_trainer_logger_and_callbacks_config_builds_a_trainer(
    compose_train, tmp_path, trainer
):
    cfg = compose_train([f"trainer={trainer}"])
    validate(cfg)
    built = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer),
        logger=instantiate(cfg.logger, save_dir=str(tmp_path)),
        callbacks=build_callbacks(cfg.callbacks, cfg.trainer.enable_progress_bar),
    )
    assert built.max_epochs == cfg.trainer.max_epochs
    assert Path(built.logger.log_dir) == tmp_path  # TensorBoard names the run by its directory


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.latent_dim=0", "model.latent_dim=0 is not allowed: an integer >= 1"),
        ("model.beta=-1", "model.beta=-1.0 is not allowed: a number >= 0"),
        ("model.adam_betas=[0.9]", "model.adam_betas=[0.9] is not allowed"),
        ("model.scheduler=linear", "model.scheduler='linear' is not allowed"),
        (
            "model.objective=tc",
            "model.objective='tc' is not allowed: one of beta, capacity, beta_tc, factor_vae, "
            "dip_vae_i, dip_vae_ii, m2",
        ),
        ("model.m2_alpha=-1", "model.m2_alpha=-1.0 is not allowed: a number >= 0"),
        (
            "data.labels_per_class=0",
            "data.labels_per_class=0 is not allowed: null (no labelled images) or an integer >= 1",
        ),
        ("model.capacity_gamma=0", "model.capacity_gamma=0.0 is not allowed: a number > 0"),
        ("model.capacity_max=-5", "model.capacity_max=-5.0 is not allowed: a number >= 0"),
        ("model.capacity_steps=-1", "model.capacity_steps=-1 is not allowed: an integer >= 0"),
        ("model.factor_vae_gamma=-1", "model.factor_vae_gamma=-1.0 is not allowed: a number >= 0"),
        ("model.dip_lambda_od=-1", "model.dip_lambda_od=-1.0 is not allowed: a number >= 0"),
        (
            "model.dip_lambda_d=-2",
            "model.dip_lambda_d=-2.0 is not allowed: null (the paper's 10·dip_lambda_od for "
            "dip_vae_i, dip_lambda_od for dip_vae_ii) or a number >= 0",
        ),
        ("data.val_fraction=1.5", "data.val_fraction=1.5 is not allowed"),
        ("data.test_fraction=0.95", "val_fraction + test_fraction must be < 1"),
        ("trainer.precision=16", "trainer.precision='16' is not allowed"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0 is not allowed"),
        ("callbacks.checkpoint.every_n_train_steps=0", "every_n_train_steps=0 is not allowed"),
        ("callbacks.progress_bar.refresh_rate=0", "refresh_rate=0 is not allowed"),
    ],
)
def test_out_of_range_values_name_the_key(compose_train, override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        validate(compose_train([override]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.objective=m2"],
            "model.objective=m2 learns from labelled and unlabelled images: set "
            "data.labels_per_class=N, the labelled training images per class",
        ),
        (
            ["data.labels_per_class=10"],
            "data.labels_per_class=10: only model.objective=m2 trains on labels; remove it (for "
            "a VAE's few-label probes: betavae-eval labels_per_class=10)",
        ),
    ],
)
def test_m2_and_labels_per_class_go_together(compose_train, overrides, message):
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        validate(compose_train(overrides))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.latent_dim=-3", "model.latent_dim=-3 is not allowed: an integer >= 1"),
        ("model.beta=abc", "model.beta: Value 'abc' of type 'str' could not be converted to Float"),
        ("data=nope", "data=nope: no such option; choose one of: celeba, cifar10,"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is not allowed: an integer >= 1"),
    ],
)
def test_bad_command_line_values_end_in_one_line_and_leave_nothing(
    tmp_path, data_dir, override, expected
):
    result = run_cli([override], cwd=tmp_path, data_dir=data_dir)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"betavae-train: error: {expected}")
    assert "Traceback" not in result.stdout
    assert not any((tmp_path / "outputs").rglob("*"))


def _conv_m2(compose_train, tmp_path: Path, overrides: list[str]) -> M2VAE:
    """The M2 that a conv M2 run on 60 sprites with `overrides` would train."""
    cfg = compose_train(
        [
            "model=conv",
            "model.objective=m2",
            "data.labels_per_class=2",
            f"paths.data_dir={tmp_path}",
            *overrides,
        ]
    )
    validate(cfg)
    cfg.data.num_examples = 60
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return build_module(cfg.model, datamodule).vae


@pytest.mark.parametrize(
    ("overrides", "shared"), [([], True), (["model.m2_shared_convs=false"], False)]
)
def test_a_conv_m2_classifier_reads_the_encoder_s_convs_unless_told_not_to(
    compose_train, tmp_path, overrides, shared
):
    m2 = _conv_m2(compose_train, tmp_path, overrides)

    assert (m2.classifier[0] is m2.encoder.features) == shared


@pytest.mark.parametrize(
    ("overrides", "head"), [([], [3]), (["model.m2_head_dims=[16]"], [16, "ReLU", 3])]
)
def test_a_conv_m2_classifier_head_is_linear_unless_given_hidden_layers(
    compose_train, tmp_path, overrides, head
):
    m2 = _conv_m2(compose_train, tmp_path, overrides)

    # After the shared convs: Linear layers by their widths, out to the sprites' three shapes.
    layers = [
        layer.out_features if isinstance(layer, nn.Linear) else type(layer).__name__
        for layer in m2.classifier[1:]
    ]
    assert layers == head


def test_a_conv_m2_head_of_no_width_names_the_key(compose_train):
    with pytest.raises(UserError, match=re.escape("model.m2_head_dims=[0] is not allowed")):
        validate(compose_train(["model=conv", "model.m2_head_dims=[0]"]))
