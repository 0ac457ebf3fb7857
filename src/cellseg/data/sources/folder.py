"""Image/mask pairs on disk: plain folders and text-file lists (``data=folder``, ``data=brightfield_zstack``).

Every layout reduces to a list of :class:`Pair` (image file, mask file or None, group); the split and
the loading are shared. Splits are by group, so related images (one patient, one field of view) never
straddle train and validation.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellseg.data.io import (
    COLOUR_SUFFIXES,
    IMAGE_SUFFIXES,
    image_stem,
    images_in_folder,
    probe_planes,
    read_planes,
)
from cellseg.data.pipeline.dataset import SampleSet
from cellseg.data.pipeline.masks import MaskDecoder
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.data.sources.loading import check_same_size, load_samples
from cellseg.errors import ConfigError, DataError


@dataclass(frozen=True)
class Pair:
    """One sample on disk: an image file, its mask file (None for stacks without masks), its group."""

    image: Path
    mask: Path | None
    group: str

    @property
    def name(self) -> str:
        return self.image.name


def split_by_group(pairs: Sequence[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Seeded split of whole groups: about ``val_fraction`` of the groups validate."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}.")
    groups = sorted({p.group for p in pairs})
    if len(groups) < 2:
        raise DataError(
            f"Cannot split {len(pairs)} image(s) of {len(groups)} group(s) into train and validation."
        )
    order = np.random.default_rng(seed).permutation(len(groups))
    count = min(max(1, math.ceil(val_fraction * len(groups))), len(groups) - 1)
    val_groups = {groups[i] for i in order[:count]}
    return [p for p in pairs if p.group not in val_groups], [p for p in pairs if p.group in val_groups]


class PairsDataModule(SegmentationDataModule):
    """Shared split and loading of :class:`Pair` lists; subclasses only find the pairs."""

    def __init__(
        self,
        root: str,
        channel_names: Sequence[str] | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        mask: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data.root '{self.root}' is not a folder.")
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.decoder = MaskDecoder(**dict(mask or {}))
        self._channel_names = tuple(channel_names) if channel_names else None
        self._plane_counts: Counter[int] = Counter()  # images per plane count, once channel_names read them
        self._splits: dict[str, list[Pair]] | None = None

    def find_pairs(self) -> dict[str, list[Pair]]:
        """Pairs per split: {'all': [...]} to be split by group, or explicit {'train': [...], 'val': [...]}."""
        raise NotImplementedError

    def splits(self) -> dict[str, list[Pair]]:
        if self._splits is None:
            found = self.find_pairs()
            if "all" in found:
                if not found["all"]:
                    raise DataError(f"No images found under {self.root}.")
                train, val = split_by_group(found["all"], self.val_fraction, self.split_seed)
                found = {"train": train, "val": val, **{k: v for k, v in found.items() if k != "all"}}
            self._splits = found
        return self._splits

    @property
    def channel_names(self) -> tuple[str, ...]:
        if self._channel_names is None:
            planes = self._planes_of_most_images()
            defaults = {1: ("gray",), 3: ("red", "green", "blue")}
            images = [pair.image for pairs in self.splits().values() for pair in pairs]
            if all(image.suffix.lower() in COLOUR_SUFFIXES for image in images):
                # a PNG/JPG's 2nd or 4th plane is its alpha; a TIFF's planes are data
                defaults |= {2: ("gray", "alpha"), 4: ("red", "green", "blue", "alpha")}
            self._channel_names = defaults.get(planes, tuple(f"ch{i}" for i in range(planes)))
        return self._channel_names

    def _planes_of_most_images(self) -> int:
        """The plane count most of the data set's images have (read from their headers), so that a file
        that differs is the one blamed; unreadable files are reported later, all together."""
        counts: Counter[int] = Counter()
        first_error: DataError | None = None
        for pairs in self.splits().values():
            for pair in pairs:
                try:
                    counts[probe_planes(pair.image)[0]] += 1
                except DataError as error:
                    first_error = first_error or error
        if not counts:
            raise first_error or DataError(f"No images found under {self.root}.")
        self._plane_counts = counts
        return counts.most_common(1)[0][0]

    def has_split(self, split: str) -> bool:
        return bool(self.splits().get(split))

    def _load(self, pair: Pair) -> tuple[str, np.ndarray, np.ndarray | None]:
        image = read_planes(pair.image)
        if image.shape[0] != len(self.channel_names):
            counts = self._plane_counts
            most = (
                f" ({counts[len(self.channel_names)]} of {counts.total()} images have those)"
                if counts
                else ""
            )
            raise DataError(
                f"{pair.image}: has {image.shape[0]} planes but the data set's channels are "
                f"{list(self.channel_names)}{most}; fix the file or data.channel_names."
            )
        if pair.mask is None:
            return pair.name, image, None
        if not pair.mask.is_file():
            raise DataError(f"{pair.image}: its mask {pair.mask} is missing.")
        mask = read_planes(pair.mask)
        check_same_size(str(pair.image), image, mask, str(pair.mask))
        return pair.name, image, self.decoder.decode(mask[0] if mask.shape[0] == 1 else mask, str(pair.mask))

    def load_split(self, split: str) -> SampleSet:
        pairs = self.splits().get(split, [])
        if not pairs:
            raise DataError(f"{type(self).__name__} under {self.root} has no '{split}' images.")
        return load_samples(pairs, self._load, self.skip_bad, f"the '{split}' split under {self.root}")


class FolderDataModule(PairsDataModule):
    """``images/`` + ``masks/`` with matching file stems (``data=folder``), or images alone.

    Masks are matched by stem (``masks/<stem><mask_suffix>.<any image suffix>``); ``masks_dir: null``
    means images without masks (then the target must be ``from_channel``). ``group_pattern`` is a regex
    whose first group (or whole match) names an image's group, e.g. ``^(patient\\d+)_``. ``lists`` splits
    by seed 002's text files instead: ``{train: [images.txt, masks.txt], val: [...]}``, paths relative to
    ``root``, names inside relative to each list's folder, pairs formed by sorted order (seed 002).
    """

    def __init__(
        self,
        root: str,
        images_dir: str = "images",
        masks_dir: str | None = "masks",
        mask_suffix: str = "",
        group_pattern: str | None = None,
        lists: Mapping[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.images_dir = images_dir
        self.masks_dir = masks_dir
        self.mask_suffix = mask_suffix
        try:
            self.group_pattern = re.compile(group_pattern) if group_pattern else None
        except re.error as error:
            raise ConfigError(
                f"data.group_pattern {group_pattern!r} is not a valid regex: {error}."
            ) from error
        self.lists = dict(lists) if lists else None
        super().__init__(root, **kwargs)

    def _group(self, path: Path) -> str:
        if self.group_pattern is None:
            return path.name
        match = self.group_pattern.search(path.name)
        if match is None:
            raise DataError(
                f"{path}: its name does not match data.group_pattern '{self.group_pattern.pattern}'."
            )
        return match.group(1) if match.groups() else match.group(0)

    def _mask_for(self, image: Path) -> Path | None:
        if self.masks_dir is None:
            return None
        folder = self.root / self.masks_dir
        stem = image_stem(image) + self.mask_suffix
        candidates = [folder / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES]
        return next((c for c in candidates if c.is_file()), folder / f"{stem}{image.suffix}")

    def _from_lists(self) -> dict[str, list[Pair]]:
        found: dict[str, list[Pair]] = {}
        for split, files in (self.lists or {}).items():
            if split not in ("train", "val", "test") or len(files) != 2:
                raise ConfigError(
                    f"data.lists.{split} must be [images.txt, masks.txt] for train, val or test."
                )
            image_list, mask_list = (self.root / f for f in files)
            names = []
            for listing in (image_list, mask_list):
                if not listing.is_file():
                    raise DataError(f"{listing}: list file not found.")
                names.append(
                    sorted(line.strip() for line in listing.read_text().splitlines() if line.strip())
                )
            if len(names[0]) != len(names[1]):
                raise DataError(
                    f"{image_list} lists {len(names[0])} images but {mask_list} lists {len(names[1])} masks."
                )
            found[split] = [
                Pair(image_list.parent / i, mask_list.parent / m, i)
                for i, m in zip(names[0], names[1], strict=True)
            ]
        return found

    def find_pairs(self) -> dict[str, list[Pair]]:
        if self.lists:
            return self._from_lists()
        images = images_in_folder(self.root / self.images_dir)
        return {"all": [Pair(p, self._mask_for(p), self._group(p)) for p in images]}
