"""`betavae-sample`: PNG grids of what a trained model generates, in `<run>/samples/`."""

import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from betavae.apps.model_apps import open_run
from betavae.apps.result_files import Results
from betavae.data.base import class_names
from betavae.errors import UserError
from betavae.evaluation.collect import SplitResults, run_split
from betavae.evaluation.disentanglement import dimension_factors
from betavae.evaluation.pictures import (
    grid,
    interpolation,
    prior_grid,
    traversal,
    traversal_labels,
)
from betavae.user_paths import shown_path
from betavae.vae import M2VAE, VAE, M2AtLabel


def sample(cfg: DictConfig, files: Results) -> list[Path]:
    """Prior samples (an M2's: one row per class), and (from test images) traversals and
    interpolations, as PNG files."""
    run = open_run(cfg)
    data = run.data_config(cfg.data)
    datamodule = run.datamodule(data)
    files.claim(run.checkpoint, data, cfg)
    vae = run.vae
    device = next(vae.parameters()).device
    grids: dict[str, torch.Tensor] = {}
    generator = torch.Generator(device).manual_seed(cfg.seed)
    draws = torch.randn(cfg.n, vae.latent_dim, generator=generator, device=device)
    per_row = math.ceil(math.sqrt(cfg.n))
    grids["prior"] = prior_grid(vae, draws, per_row, class_names(datamodule.train_set))
    if cfg.traverse or cfg.interpolate:
        results = run_split(vae, datamodule.split_dataloader("test"))
        mu = results.mu.to(device)
        if cfg.traverse:
            kl = results.kl.mean(0)
            order = kl.argsort(descending=True)
            rows = traversal(_decoder(vae, results, 0), mu[0], order, cfg.span, cfg.steps)
            factor_names = getattr(datamodule, "factor_names", None)
            factors = (
                ()
                if factor_names is None
                else dimension_factors(results.mu, results.targets, factor_names)
            )
            labels = traversal_labels(order, kl, factors)
            grids["traversal"] = grid(rows, cfg.steps, labels)
        if cfg.interpolate:
            if len(mu) < 2 * cfg.pairs:
                raise UserError(
                    f"pairs={cfg.pairs} needs {2 * cfg.pairs} test images, there are {len(mu)}; "
                    "lower pairs"
                )
            pairs = mu[: 2 * cfg.pairs].view(cfg.pairs, 2, -1)
            lines = [
                interpolation(_decoder(vae, results, 2 * i), start[None], end[None], cfg.steps)
                for i, (start, end) in enumerate(pairs.unbind())
            ]
            grids["interpolation"] = grid(torch.cat(lines), cfg.steps)
    written = [files.save_picture(kind, picture) for kind, picture in grids.items()]
    print(f"Wrote to {shown_path(files.folder)}: {', '.join(p.name for p in written)}")
    return written


def _decoder(vae: VAE | M2VAE, results: SplitResults, index: int) -> VAE | M2AtLabel:
    """What draws the codes of test image `index`: the VAE, or M2 at the class it predicts for
    the image (M2's z is the style, drawn as one class)."""
    if isinstance(vae, M2VAE):
        return vae.at_label(int(results.class_probs[index].argmax()))
    return vae
