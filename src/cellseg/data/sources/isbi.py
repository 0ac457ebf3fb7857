"""ISBI 2012 EM segmentation challenge (``data=isbi``): 30 ssTEM slices of 512 x 512 with membrane labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellseg.data.downloads import fetch_all
from cellseg.data.io import IMAGE_SUFFIXES, images_in_folder, read_planes
from cellseg.data.pipeline.dataset import SampleSet
from cellseg.data.pipeline.masks import MaskDecoder
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.data.sources.loading import check_same_size, load_samples
from cellseg.errors import ConfigError, DataError

CHALLENGE_SITE = "http://brainiac2.mit.edu/isbi_challenge/"


def slice_split(
    num_slices: int,
    train_slices: Sequence[int] | None = None,
    val_slices: Sequence[int] | None = None,
    fold: int | None = None,
    num_folds: int | None = None,
) -> tuple[list[int], list[int]]:
    """Train and validation slice indices.

    Default: the last 5 slices validate (slices 0-24 / 25-29 of ISBI's 30, the U-Net paper's users'
    split). ``num_folds``/``fold``: contiguous blocks, block ``fold`` validates. Explicit lists win; a
    slice may not be in both, and neither split may be empty.
    """
    if fold is not None or num_folds is not None:
        if train_slices is not None or val_slices is not None:
            raise ConfigError("Give either data.fold/data.num_folds or explicit train/val slices, not both.")
        if num_folds is None or fold is None or not 2 <= num_folds <= num_slices or not 0 <= fold < num_folds:
            raise ConfigError(
                f"data.fold must be in [0, data.num_folds) with 2 <= num_folds <= {num_slices}; "
                f"got fold={fold}, num_folds={num_folds}."
            )
        blocks = np.array_split(np.arange(num_slices), num_folds)
        val = blocks[fold].tolist()
        return [i for i in range(num_slices) if i not in val], val
    if val_slices is None:
        val_slices = (
            list(range(max(num_slices - 5, 1), num_slices))
            if train_slices is None
            else [i for i in range(num_slices) if i not in set(train_slices)]
        )
    if train_slices is None:
        train_slices = [i for i in range(num_slices) if i not in set(val_slices)]
    train, val = [int(i) for i in train_slices], [int(i) for i in val_slices]
    bad = [i for i in (*train, *val) if not 0 <= i < num_slices]
    if bad:
        raise ConfigError(
            f"Slice indices {bad} are out of range: the stack has {num_slices} slices (0..{num_slices - 1})."
        )
    both = sorted(set(train) & set(val))
    if both:
        raise ConfigError(f"Slices {both} are in both data.train_slices and data.val_slices.")
    if not train or not val:
        raise DataError(f"The ISBI split leaves the {'train' if not train else 'val'} split empty.")
    return train, val


def read_stack(path: Path) -> tuple[np.ndarray, list[str]]:
    """Slices (N, H, W) of a multi-page TIFF, or of a folder of per-slice images sorted by name."""
    if path.is_dir():
        files = images_in_folder(path)
        if not files:
            raise DataError(f"{path}: folder has no slice images ({', '.join(IMAGE_SUFFIXES)}).")
        slices = [read_planes(f) for f in files]
        shapes = {s.shape for s in slices}
        if len(shapes) != 1 or slices[0].shape[0] != 1:
            raise DataError(
                f"{path}: per-slice images must all be single-plane and the same size, got {shapes}."
            )
        return np.concatenate(slices), [f.name for f in files]
    stack = read_planes(path)
    return stack, [f"{path.name}[{i}]" for i in range(len(stack))]


class IsbiDataModule(SegmentationDataModule):
    """Slices of an EM stack and its label stack (multi-page TIFFs, or folders of per-slice images).

    Labels follow ISBI's convention (255 = cell interior, 0 = membrane); instances are the 4-connected
    cell regions, as the challenge's scoring defines them.
    """

    def __init__(
        self,
        root: str | None = None,
        volume: str = "train-volume.tif",
        labels: str = "train-labels.tif",
        train_slices: Sequence[int] | None = None,
        val_slices: Sequence[int] | None = None,
        fold: int | None = None,
        num_folds: int | None = None,
        download: bool = False,
        cache_dir: str | None = None,
        urls: Mapping[str, str] | None = None,
        pixel_sha256: Mapping[str, str] | None = None,
        mask: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.split_args = {
            "train_slices": train_slices,
            "val_slices": val_slices,
            "fold": fold,
            "num_folds": num_folds,
        }
        self.decoder = MaskDecoder(**dict(mask or {}))
        folder = self._locate(root, volume, labels, download, cache_dir, urls or {}, pixel_sha256 or {})
        self.volume_path, self.labels_path = folder / volume, folder / labels
        _ = self.bound_channels  # a bad channel name fails here, before any data is read
        self._stacks: tuple[np.ndarray, np.ndarray, list[str]] | None = None

    @staticmethod
    def _locate(
        root: str | None,
        volume: str,
        labels: str,
        download: bool,
        cache_dir: str | None,
        urls: Mapping[str, str],
        checksums: Mapping[str, str],
    ) -> Path:
        if root is not None and (Path(root) / volume).exists() and (Path(root) / labels).exists():
            return Path(root)
        if download:
            if cache_dir is None:
                raise ConfigError("data.download=true needs data.cache_dir.")
            wanted = {name: urls[name] for name in (volume, labels) if name in urls}
            if len(wanted) < 2:
                raise ConfigError(f"data.urls must give a URL for {volume} and {labels} to download them.")
            return fetch_all(wanted, checksums, Path(cache_dir).expanduser() / "isbi2012")
        where = f"'{root}'" if root is not None else "(data.root is not set)"
        raise DataError(
            f"ISBI 2012 data not found {where}: expected {volume} and {labels} there (30 x 512 x 512 "
            f"multi-page TIFFs, or folders of per-slice images). Get them from the challenge site "
            f"{CHALLENGE_SITE} and pass data.root=<folder>, or set data.download=true to fetch them from "
            "data.urls into the cache directory."
        )

    @property
    def channel_names(self) -> tuple[str, ...]:
        return ("em",)

    def _load_stacks(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if self._stacks is None:
            volume, names = read_stack(self.volume_path)
            labels, _ = read_stack(self.labels_path)
            if volume.shape[0] != labels.shape[0]:
                raise DataError(
                    f"{self.volume_path} has {volume.shape[0]} slices but {self.labels_path} has {labels.shape[0]}."
                )
            check_same_size(str(self.volume_path), volume, labels, str(self.labels_path))
            self._stacks = (volume, labels, names)
        return self._stacks

    def load_split(self, split: str) -> SampleSet:
        volume, labels, names = self._load_stacks()
        train, val = slice_split(len(volume), **self.split_args)
        indices = {"train": train, "val": val}.get(split)
        if indices is None:
            raise DataError(
                f"ISBI 2012 has no labelled '{split}' split (the test volume has no public labels)."
            )

        def load(i: int) -> tuple[str, np.ndarray, np.ndarray]:
            return (
                names[i],
                volume[i : i + 1],
                self.decoder.decode(labels[i], f"{self.labels_path} slice {i}"),
            )

        return load_samples(indices, load, self.skip_bad, f"{self.volume_path}")
