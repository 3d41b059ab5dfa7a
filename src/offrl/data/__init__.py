"""Offline datasets: validated arrays, file loaders, preprocessing transforms, device samplers."""

from .dataset import Dataset, DatasetError, DatasetInfo
from .sampling import (Batch, DeviceData, Segment, sample_nstep, sample_segments, sample_uniform,
                       to_device)
from .transforms import Transforms, fit_transforms

from .registry import dataset_path, list_datasets, load_dataset, register_dataset

__all__ = [
    "Batch",
    "dataset_path",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DeviceData",
    "Segment",
    "Transforms",
    "fit_transforms",
    "sample_nstep",
    "sample_segments",
    "sample_uniform",
    "to_device",
]
