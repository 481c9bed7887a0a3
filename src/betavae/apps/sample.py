"""`betavae-sample`: PNG grids of what a trained model generates, in `<run>/samples/`."""

import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from betavae.apps.model_apps import open_run
from betavae.apps.result_files import Results
from betavae.errors import UserError
from betavae.evaluation.collect import run_split
from betavae.evaluation.disentanglement import dimension_factors
from betavae.evaluation.pictures import grid, interpolation, traversal, traversal_labels
from betavae.user_paths import shown_path


def sample(cfg: DictConfig, files: Results) -> list[Path]:
    """Prior samples, and (from test images) traversals and interpolations, as PNG files."""
    run = open_run(cfg)
    data = run.data_config(cfg.data)
    datamodule = run.datamodule(data)
    files.claim(run.checkpoint, data, cfg)
    vae = run.vae
    device = next(vae.parameters()).device
    grids: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        prior = vae.sample(cfg.n, torch.Generator(device).manual_seed(cfg.seed))
    grids["prior"] = grid(prior, math.ceil(math.sqrt(cfg.n)))
    if cfg.traverse or cfg.interpolate:
        results = run_split(vae, datamodule.split_dataloader("test"))
        mu = results.mu.to(device)
        if cfg.traverse:
            kl = results.kl.mean(0)
            order = kl.argsort(descending=True)
            rows = traversal(vae, mu[0], order, cfg.span, cfg.steps)
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
            lines = interpolation(vae, pairs[:, 0], pairs[:, 1], cfg.steps)
            grids["interpolation"] = grid(lines, cfg.steps)
    written = [files.save_picture(kind, picture) for kind, picture in grids.items()]
    print(f"Wrote to {shown_path(files.folder)}: {', '.join(p.name for p in written)}")
    return written
