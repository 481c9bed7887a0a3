"""`betavae-encode`: every example's latent posterior, for use elsewhere, and a 2-D scatter."""

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from betavae.apps.model_apps import data_split, examples, open_run
from betavae.data.base import class_labels, class_names, source_indices
from betavae.evaluation.collect import run_split
from betavae.evaluation.plots import latent_scatter
from betavae.user_paths import shown_path


def encode(cfg: DictConfig, paths: dict[str, Path]) -> Path:
    """Write `<run>/latents/<split>.npz` (mu, logvar, targets, labels, index) and a scatter."""
    run = open_run(cfg)
    path, plot = paths["latents"], paths["scatter"]
    datamodule = run.datamodule(cfg.data)
    split = datamodule.split_set(data_split(cfg))
    results = run_split(run.vae, datamodule.split_dataloader(data_split(cfg)))
    labels = class_labels(split)
    factor_names = getattr(datamodule, "factor_names", None)
    arrays = {
        "mu": results.mu.numpy(),
        "logvar": results.logvar.numpy(),
        "targets": results.targets.numpy(),
        "index": source_indices(split).numpy(),
    }
    if labels is not None:
        arrays["labels"] = labels.numpy()
    if factor_names is not None:
        arrays["factor_names"] = np.array(factor_names)
    path.parent.mkdir(exist_ok=True)
    np.savez(path, **arrays)
    label_name = factor_names[0] if factor_names is not None else "label"
    latent_scatter(results.mu, labels, label_name, class_names(split), plot)
    shape = "x".join(map(str, results.mu.shape))
    encoded = examples(len(results.mu), data_split(cfg))
    print(f"Encoded {encoded} (mu {shape}): {shown_path(path)}")
    print(f"Scatter: {shown_path(plot)}")
    return path
