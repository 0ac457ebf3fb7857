"""``data=hyperlabeled``: seed 001's hyper-labeled OME-TIFF stacks with PNG masks and ``codes.txt``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cellseg.data.io import image_stem
from cellseg.data.pipeline.seed_codes import HYPERLABELED_CHANNELS
from cellseg.data.sources.folder import Pair, PairsDataModule
from cellseg.errors import DataError


class HyperlabeledDataModule(PairsDataModule):
    """Seed 001's hyper-labeled stacks: ``FullImage/<sub>/<name>.ome.tif`` (one page per channel) and
    ``Mask_Norm/<sub>/<name>.png`` (0/1 masks, all 0 for cell-free negative controls), ``codes.txt``
    naming the classes. ``page_names`` maps pages to channel names (default: seed 001's 16 pages)."""

    def __init__(self, root: str, page_names: Sequence[str] = HYPERLABELED_CHANNELS, **kwargs: Any) -> None:
        kwargs.setdefault("mask", {"foreground": [1], "background": [0]})
        super().__init__(root, channel_names=page_names, **kwargs)
        codes = self.root / "codes.txt"
        if codes.is_file():
            names = [line.strip() for line in codes.read_text().splitlines() if line.strip()]
            if len(names) != self.target.num_classes:
                raise DataError(
                    f"{codes} names {len(names)} classes {names} but target '{type(self.target).__name__}' "
                    f"has {self.target.num_classes} ({list(self.target.class_names)})."
                )

    def find_pairs(self) -> dict[str, list[Pair]]:
        images_root = self.root / "FullImage"
        if not images_root.is_dir():
            raise DataError(
                f"{images_root}: not found; a hyper-labeled root holds FullImage/, Mask_Norm/ and codes.txt."
            )
        pairs = []
        for image in sorted(images_root.rglob("*.ome.tif")):
            relative = image.relative_to(images_root)
            mask = self.root / "Mask_Norm" / relative.parent / f"{image_stem(image)}.png"
            pairs.append(Pair(image, mask, str(relative)))
        return {"all": pairs}
