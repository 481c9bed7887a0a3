"""Seeing through carved splits: a split is a `Subset` (of a `Subset`...) of one data set."""

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset


def source_and_indices(dataset: Dataset) -> tuple[Dataset, Tensor | None]:
    """The data set a split was carved from and the split's indices into it (None when
    `dataset` is not a split), so per-example arrays of the source can be gathered at once."""
    if not isinstance(dataset, Subset):
        return dataset, None
    source, outer = source_and_indices(dataset.dataset)
    inner = torch.as_tensor(dataset.indices, dtype=torch.long)
    return source, inner if outer is None else outer[inner]
