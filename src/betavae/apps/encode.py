"""`betavae-encode`: every example's latent posterior, for use elsewhere, and a 2-D scatter."""

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from betavae.apps.model_apps import data_split, examples, open_run
from betavae.apps.result_files import Results
from betavae.data.base import class_labels, class_names, source_indices
from betavae.evaluation.collect import run_split
from betavae.evaluation.plots import latent_scatter
from betavae.user_paths import shown_path


def encode(cfg: DictConfig, files: Results) -> Path:
    """Write `<run>/latents/<split>.npz` (mu, logvar, targets, labels, index; an M2's q(y|x)
    as q_y, with mu and logvar at the class it predicts) and a scatter."""
    run = open_run(cfg)
    data = run.data_config(cfg.data)
    datamodule = run.datamodule(data)
    files.claim(run.checkpoint, data, cfg)
    split = datamodule.split_set(data_split(cfg))
    encoded = run_split(run.vae, datamodule.split_dataloader(data_split(cfg)))
    labels = class_labels(split)
    factor_names = getattr(datamodule, "factor_names", None)
    arrays = {
        "mu": encoded.mu.numpy(),
        "logvar": encoded.logvar.numpy(),
        "targets": encoded.targets.numpy(),
        "index": source_indices(split).numpy(),
    }
    if labels is not None:
        arrays["labels"] = labels.numpy()
    if encoded.class_probs is not None:
        arrays["q_y"] = encoded.class_probs.numpy()
    if factor_names is not None:
        arrays["factor_names"] = np.array(factor_names)
    path = files.save_arrays("latents", arrays)
    label_name = getattr(datamodule, "class_factor", "label")
    plot = files.path("scatter")
    latent_scatter(
        encoded.mu, labels, label_name, class_names(split), plot, files.png_metadata("scatter")
    )
    shape = "x".join(map(str, encoded.mu.shape))
    print(f"Encoded {examples(len(encoded.mu), data_split(cfg))} (mu {shape}): {shown_path(path)}")
    print(f"Scatter: {shown_path(plot)}")
    return path
