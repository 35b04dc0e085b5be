"""Datasets: benchmark readers, ImageFolder/CSV, offline testbeds, few-shot and base/novel splits.

The engine calls `prepare_dataset(name, root, shots=K, seed=S, split="base")`; the model's
preprocessing is `train_transform(resolution)` / `eval_transform(resolution)`. DATASETS.md
(repository root) tells users how to lay out each dataset.
"""

from .base import Datum, DatasetSplits, ImageDataset, load_image
from .fewshot import base_novel_labels, few_shot, fewshot_cache_path, prepare_dataset, subsample_classes
from .registry import dataset_entry, list_datasets, register_dataset
from .splits import (
    IMAGE_EXTENSIONS,
    clean_classname,
    read_split_json,
    split_to_json,
    write_split_json,
)
from .transforms import eval_transform, train_transform

__all__ = [
    "Datum",
    "DatasetSplits",
    "ImageDataset",
    "load_image",
    "dataset_entry",
    "list_datasets",
    "register_dataset",
    "prepare_dataset",
    "few_shot",
    "subsample_classes",
    "base_novel_labels",
    "fewshot_cache_path",
    "train_transform",
    "eval_transform",
    "clean_classname",
    "read_split_json",
    "write_split_json",
    "split_to_json",
    "IMAGE_EXTENSIONS",
]
