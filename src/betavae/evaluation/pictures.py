"""Images made from the latent space: traversals and interpolations (and the scatter in plots).

These return image tensors, so the same grids can be written to PNG files by the apps and to
TensorBoard by a training callback; `grid` lays them out the same way for both.
"""

import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

from betavae.vae import M2VAE, VAE, M2AtLabel

# Light grey lines between cells: visible on the black background of sprites and digits, where
# make_grid's default black padding disappears; 4 pixels wide, so that they survive
# TensorBoard's shrinking a picture to its card.
SEPARATOR = 204
SEPARATOR_PIXELS = 4
# Images smaller than this are enlarged (nearest neighbour, so pixels stay sharp) to read at
# TensorBoard's default size, where a 32-pixel sprite is a speck next to its label.
MIN_CELL_PIXELS = 64
# matplotlib's own copy of DejaVu Sans: always installed with it, so labels need no system font.
_FONT_FILE = Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"


def grid(images: Tensor, per_row: int, row_labels: Sequence[str] = ()) -> Tensor:
    """(C, H, W) uint8 picture of `images` (N, C, H, W) in [0, 1]: rows of `per_row` cells with
    light lines between them; with `row_labels` (one per row) each row starts with its label.

    Bytes from the start, and one channel for grey images (as a PNG file stores them): the
    pictures are drawn during training, where converting and compressing three float channels
    took most of their time.
    """
    cells = images.detach().float().clamp(0, 1).mul(255).round_().to(torch.uint8).cpu()
    scale = math.ceil(MIN_CELL_PIXELS / max(cells.shape[-2:]))
    if scale > 1:
        cells = F.interpolate(cells, scale_factor=scale, mode="nearest")
    picture = make_grid(cells, nrow=per_row, padding=SEPARATOR_PIXELS, pad_value=SEPARATOR)
    picture = picture[: cells.shape[1]].contiguous()  # make_grid makes grey images RGB
    if not row_labels:
        return picture
    rows = math.ceil(len(cells) / per_row)
    if len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    return _labelled(picture, row_labels, cell_height=cells.shape[-2])


def _labelled(picture: Tensor, row_labels: Sequence[str], cell_height: int) -> Tensor:
    """`picture` with a column on its left holding each row's label, centred on the row."""
    # TensorBoard fits a picture to a card about 400 pixels wide: text 0.4 of a row high keeps
    # about 12 pixels there for a row of 10 cells.
    font = _font(max(12, round(cell_height * 0.4)))
    margin = font.size // 2
    width = margin * 2 + math.ceil(max(font.getlength(label) for label in row_labels))
    pixels = to_pixels(picture)
    grey = pixels.ndim == 2
    canvas = Image.new("L" if grey else "RGB", (width + pixels.shape[1], pixels.shape[0]))
    canvas.paste(SEPARATOR if grey else (SEPARATOR,) * 3, (0, 0, width, pixels.shape[0]))
    canvas.paste(Image.fromarray(pixels), (width, 0))
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(row_labels):
        middle = SEPARATOR_PIXELS + row * (cell_height + SEPARATOR_PIXELS) + cell_height / 2
        draw.text((margin, middle), label, fill=0 if grey else (0, 0, 0), font=font, anchor="lm")
    labelled = torch.from_numpy(np.asarray(canvas).copy())
    return labelled[None] if grey else labelled.permute(2, 0, 1).contiguous()


def to_pixels(picture: Tensor) -> np.ndarray:
    """(C, H, W) uint8 as (H, W) for one channel and (H, W, 3) for three: the arrays PIL
    takes as a grey ("L") and a colour ("RGB") image."""
    return picture[0].numpy() if len(picture) == 1 else picture.permute(1, 2, 0).numpy()


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_FONT_FILE), size)


@torch.no_grad()
def prior_grid(
    model: VAE | M2VAE, draws: Tensor, per_row: int, class_names: Sequence[str] = ()
) -> Tensor:
    """Draws z (n, D) from the prior, decoded and drawn as a grid: a VAE's in rows of
    `per_row`; M2's one row per class, labelled with its name, of the first `per_row` draws
    decoded with that class, so that each column is one z, one style, drawn as every class."""
    if not isinstance(model, M2VAE):
        return grid(_decoded(model, draws), per_row)
    z = draws[:per_row]
    rows = [_decoded(model.at_label(label), z) for label in range(model.num_classes)]
    names = list(class_names) or [str(label) for label in range(model.num_classes)]
    return grid(torch.cat(rows), len(z), names)


def _decoded(vae: VAE | M2AtLabel, latents: Tensor) -> Tensor:
    """The images (N, C, H, W) of latents (N, D): the likelihood's means, in float32."""
    return vae.likelihood.mean(vae.decode(latents)).float()


def traversal_labels(
    order: Tensor, kl_per_dim: Tensor, factors: Sequence[str | None] = ()
) -> list[str]:
    """Row labels of a traversal in `order`: the dimension, its KL (nats per example) and, on
    data with generative factors, the factor it follows (`disentanglement.dimension_factors`)."""
    labels = []
    for d in order.tolist():
        factor = factors[d] if factors else None
        labels.append(f"z{d}  KL {kl_per_dim[d]:.2f}" + (f"  {factor}" if factor else ""))
    return labels


@torch.no_grad()
def traversal(vae: VAE | M2AtLabel, mu: Tensor, order: Tensor, span: float, steps: int) -> Tensor:
    """(len(order) · steps, C, H, W) images: row r sweeps dimension order[r] over ±span.

    The other dimensions stay at `mu` (D,), a data point's posterior mean. Since the prior is
    N(0, I), ±3 covers nearly all of it; rows are typically ordered by KL, most informative first.
    """
    values = torch.linspace(-span, span, steps, device=mu.device, dtype=mu.dtype)
    latents = mu.repeat(len(order), steps, 1)  # (rows, steps, D)
    rows = torch.arange(len(order), device=mu.device)
    latents[rows, :, order.to(mu.device)] = values
    return _decoded(vae, latents.flatten(0, 1))


@torch.no_grad()
def interpolation(vae: VAE | M2AtLabel, start: Tensor, end: Tensor, steps: int) -> Tensor:
    """(P · steps, C, H, W) images decoded along the lines from start[p] to end[p], both (P, D)."""
    weights = torch.linspace(0, 1, steps, device=start.device, dtype=start.dtype)[None, :, None]
    latents = start[:, None] + weights * (end - start)[:, None]
    return _decoded(vae, latents.flatten(0, 1))
