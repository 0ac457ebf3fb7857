"""Small on-disk data sets in every layout cellseg reads, written by the tests themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from cellseg.data.pipeline.seed_codes import HYPERLABELED_CHANNELS

RNG = np.random.default_rng(0)


def cells_mask(size: int = 32, value: int = 255) -> np.ndarray:
    """Two square cells on background."""
    mask = np.zeros((size, size), np.uint8)
    mask[size // 8 : size // 2 - 2, size // 8 : size // 2 - 2] = value
    mask[size // 2 + 2 : size - 4, size // 2 : size - 2] = value
    return mask


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_tiff(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return path


def write_isbi(root: Path, slices: int = 30, size: int = 32) -> Path:
    write_tiff(root / "train-volume.tif", RNG.integers(0, 255, (slices, size, size), dtype=np.uint8))
    write_tiff(root / "train-labels.tif", np.stack([cells_mask(size) for _ in range(slices)]))
    return root


def write_folder(root: Path, count: int = 6, size: int = 32) -> Path:
    for i in range(count):
        write_png(root / "images" / f"img{i}.png", RNG.integers(0, 255, (size, size), dtype=np.uint8))
        write_png(root / "masks" / f"img{i}.png", cells_mask(size))
    return root


def write_lgg(root: Path, patients: int = 3, size: int = 32) -> Path:
    for p in range(patients):
        for s in range(2):
            name = f"TCGA_{p}_{s}"
            write_tiff(
                root / f"TCGA_{p}" / f"{name}.tif", RNG.integers(0, 255, (size, size, 3), dtype=np.uint8)
            )
            write_tiff(root / f"TCGA_{p}" / f"{name}_mask.tif", cells_mask(size))
    return root


def write_hyperlabeled(root: Path, count: int = 5, size: int = 32) -> Path:
    for i in range(count):
        sub = "negatives" if i % 3 == 2 else "cells"
        write_tiff(
            root / "FullImage" / sub / f"c{i}.ome.tif",
            RNG.integers(0, 4096, (len(HYPERLABELED_CHANNELS), size, size), dtype=np.uint16),
        )
        mask = cells_mask(size, 1) if sub == "cells" else np.zeros((size, size), np.uint8)
        write_png(root / "Mask_Norm" / sub / f"c{i}.png", mask)
    (root / "codes.txt").write_text("Background\nCell\n")
    return root


def write_zstack(root: Path, fields: int = 2, size: int = 48) -> Path:
    for i in range(fields):
        image = RNG.integers(0, 60, (7, size, size), dtype=np.uint8)
        image[0] = 0
        image[0, 8:20, 8:20] = 220  # DAPI-stained nuclei
        image[0, 28:40, 24:38] = 200
        write_tiff(root / f"field{i}.tif", image)
    return root


# data option -> (writer, the channels preset that fits it)
DATA_FIXTURES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "isbi": (write_isbi, "em"),
    "folder": (write_folder, "first"),
    "lgg": (write_lgg, "rgb"),
    "hyperlabeled": (write_hyperlabeled, "fluorescence"),
    "brightfield_zstack": (write_zstack, "zstack_focus"),
}


def data_overrides(option: str, tmp_path: Path) -> list[str]:
    """Overrides that point ``data=<option>`` at a fixture written under ``tmp_path``."""
    if option == "synthetic":
        return ["data=synthetic"]
    writer, _ = DATA_FIXTURES[option]
    return [f"data={option}", f"data.root={writer(tmp_path / option)}"]


def channels_data(preset: str) -> str:
    """The data option whose channels a channels preset names."""
    if preset.startswith("hl_"):
        return "hyperlabeled"
    if preset.startswith("zstack_"):
        return "brightfield_zstack"
    return {"em": "isbi", "first": "folder", "rgb": "lgg"}.get(preset, "synthetic")
