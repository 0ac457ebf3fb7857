"""``data=lgg``: Kaggle's LGG brain MRI slices (``kaggle_3m``), split by patient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cellseg.data.sources.folder import Pair, PairsDataModule


class LggDataModule(PairsDataModule):
    """Kaggle LGG brain MRI (``kaggle_3m``): ``<patient>/<name>.tif`` + ``<name>_mask.tif``, split by patient.

    Seed 003 split these 3,929 slices at random, so slices of one patient landed on both sides; here
    every patient's slices stay together.
    """

    def __init__(
        self,
        root: str,
        channel_names: Sequence[str] | None = ("pre_contrast", "flair", "post_contrast"),
        **kwargs: Any,
    ) -> None:
        super().__init__(root, channel_names=channel_names, **kwargs)

    def find_pairs(self) -> dict[str, list[Pair]]:
        pairs = []
        for patient in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for image in sorted(patient.glob("*.tif")):
                if not image.stem.endswith("_mask"):
                    pairs.append(Pair(image, image.with_name(f"{image.stem}_mask.tif"), patient.name))
        return {"all": pairs}
