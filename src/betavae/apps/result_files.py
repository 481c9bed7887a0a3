"""The files a model-using app writes into a run: named after what makes them, and recording it.

A result's name holds the options that change it when they differ from their defaults
(`prior-n=16.png`), the data set when it is not the run's own (`imagefolder-all-elbo.csv`),
and its folder the checkpoint when it is not the best one (`eval-last/`): results of different
options sit side by side. Each file also records what made it, inside itself: the checkpoint
and a hash of its bytes, the data settings and those options (a PNG's text chunk, a field of a
JSON file, an array of an .npz; a score table's is in the summary beside it).

So a command run again writes its files again where they come from the same things, and
refuses, naming what differs, where a file of the same name came from other things: the run
trained on since, another folder of images. `overwrite=true` replaces them anyway.
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from betavae.config.flat import flatten
from betavae.errors import UserError
from betavae.lifecycle.layout import is_experiment_key
from betavae.user_paths import shown_path

# The key of what made a file: a JSON field, a PNG text chunk, an .npz array.
MADE_FROM = "made_from"


@dataclass(frozen=True)
class ResultFile:
    name: str
    options: tuple[str, ...]
    """The app's options that change this file (and, away from their defaults, its name)."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def made_from(
    checkpoint: Path,
    checkpoint_hash: str,
    data: DictConfig,
    cfg: DictConfig,
    options: Iterable[str],
) -> dict[str, Any]:
    """What makes a result: the checkpoint, the data (less where it is cached) and options."""
    settings = flatten({"data": OmegaConf.to_container(data, resolve=True)})
    return {
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": checkpoint_hash,
        "data": {key: value for key, value in settings.items() if is_experiment_key(key)},
        "options": {key: OmegaConf.to_container(cfg)[key] for key in options},
    }


class Results:
    """The files an app is about to write into `folder`, and what makes each of them."""

    def __init__(self, folder: Path, files: dict[str, ResultFile], overwrite: bool) -> None:
        self.folder = folder
        self.files = files
        self.overwrite = overwrite
        self.made: dict[str, dict[str, Any]] = {}

    def path(self, kind: str) -> Path:
        return self.folder / self.files[kind].name

    @property
    def paths(self) -> list[Path]:
        return [self.path(kind) for kind in self.files]

    def claim(self, checkpoint: Path, data: DictConfig, cfg: DictConfig) -> None:
        """Record what makes each file; refuse, before anything is computed, a file of the same
        name that something else made (unless overwrite=true)."""
        checkpoint_hash = sha256(checkpoint)
        for kind, file in self.files.items():
            self.made[kind] = made_from(checkpoint, checkpoint_hash, data, cfg, file.options)
            path = self.path(kind)
            if self.overwrite or not path.exists():
                continue
            before = recorded(path)
            if before != self.made[kind]:
                raise UserError(
                    f"{shown_path(path)} exists already, {_difference(before, self.made[kind])}; "
                    "pass overwrite=true to replace it"
                )
        self.folder.mkdir(exist_ok=True)

    def write_json(self, kind: str, content: dict[str, Any]) -> Path:
        path = self.path(kind)
        path.write_text(json.dumps({**content, MADE_FROM: self.made[kind]}, indent=2) + "\n")
        return path

    def save_picture(self, kind: str, picture: Any) -> Path:
        """`picture`: (C, H, W) uint8 (`pictures.grid`), a grey PNG file where C is 1."""
        from betavae.evaluation.pictures import to_pixels  # torch: once the data is checked

        path = self.path(kind)
        Image.fromarray(to_pixels(picture)).save(path, pnginfo=self._png_text(kind))
        return path

    def png_metadata(self, kind: str) -> dict[str, str]:
        """The text chunk of a PNG that matplotlib writes (`savefig(metadata=...)`)."""
        return {MADE_FROM: json.dumps(self.made[kind])}

    def save_arrays(self, kind: str, arrays: dict[str, np.ndarray]) -> Path:
        path = self.path(kind)
        np.savez(path, **arrays, **{MADE_FROM: np.array(json.dumps(self.made[kind]))})
        return path

    def _png_text(self, kind: str) -> PngInfo:
        info = PngInfo()
        info.add_text(MADE_FROM, json.dumps(self.made[kind]))
        return info


def recorded(path: Path) -> dict[str, Any] | None:
    """What made a result file, as it records it; None where it records nothing (a file from
    another program, or from betavae before files recorded this)."""
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text()).get(MADE_FROM)
        if path.suffix == ".png":
            with Image.open(path) as image:
                text = image.text.get(MADE_FROM)
            return None if text is None else json.loads(text)
        if path.suffix == ".npz":
            with np.load(path) as arrays:
                return json.loads(arrays[MADE_FROM].item()) if MADE_FROM in arrays else None
        if path.suffix == ".csv":  # a score table: its summary beside it says
            summary = path.with_suffix(".json")
            return recorded(summary) if summary.is_file() else None
    except (OSError, ValueError, KeyError):
        return None
    return None


def _difference(before: dict[str, Any] | None, now: dict[str, Any]) -> str:
    """What made the existing file otherwise, in a few words."""
    if before is None:
        return "written by something that did not record what made it"
    if before.get("checkpoint") != now["checkpoint"]:
        return f"made from {shown_path(before.get('checkpoint', '?'))}"
    if before.get("checkpoint_sha256") != now["checkpoint_sha256"]:
        return (
            f"made from an earlier state of {shown_path(now['checkpoint'])} (the run has "
            "trained on since)"
        )
    for part in ("data", "options"):
        old, new = before.get(part, {}), now[part]
        changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
        if changed:
            key = changed[0]
            return f"made with {key}={old.get(key)} (now {new.get(key)})"
    return "made otherwise"
