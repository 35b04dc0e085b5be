"""Datasets: benchmark readers, ImageFolder/CSV, offline testbeds, few-shot and base/novel splits."""

from .base import Datum, DatasetSplits, ImageDataset, load_image
from .registry import dataset_entry, list_datasets, register_dataset

__all__ = ["Datum", "DatasetSplits", "ImageDataset", "load_image", "dataset_entry", "list_datasets", "register_dataset"]
