"""Seeing through carved splits: a split is a `Subset` (of a `Subset`...) of one data set, and
`all` splits together are a `ConcatDataset` of them."""

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset


def source_and_indices(dataset: Dataset) -> tuple[Dataset, Tensor | None]:
    """The data set a split was carved from and the split's indices into it (None when
    `dataset` is not a split), so per-example arrays of the source can be gathered at once."""
    if isinstance(dataset, ConcatDataset):
        parts = [source_and_indices(part) for part in dataset.datasets]
        sources = {id(source) for source, _ in parts}
        if len(sources) == 1 and all(indices is not None for _, indices in parts):
            return parts[0][0], torch.cat([indices for _, indices in parts])
        return dataset, None
    if not isinstance(dataset, Subset):
        return dataset, None
    source, outer = source_and_indices(dataset.dataset)
    inner = torch.as_tensor(dataset.indices, dtype=torch.long)
    return source, inner if outer is None else outer[inner]
