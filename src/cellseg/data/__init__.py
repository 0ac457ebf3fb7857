"""Data: where images come from (``sources``) and how each becomes a training sample (``pipeline``).

- :mod:`cellseg.data.sources`: one LightningDataModule per data source on a shared base (``base``,
  ``synthetic``, ``folder``, ``isbi``, ``lgg``, ``hyperlabeled``; ``data=brightfield_zstack`` is a
  folder of multi-page TIFFs), each decoding its splits once at set-up;
- :mod:`cellseg.data.pipeline`: the per-sample steps every source shares: channel strategies, targets
  and U-Net weight maps, mask decoding, normalisation, augmentation and the Dataset that chains them;
- :mod:`cellseg.data.io` reads image files (PNG, JPG, TIFF stacks); :mod:`cellseg.data.downloads`
  fetches public data sets into the cache, checked by the checksum of their pixels.
"""

from cellseg.data.pipeline.channels import BoundChannels, ChannelStrategy
from cellseg.data.pipeline.dataset import SampleSet, SegmentationDataset
from cellseg.data.pipeline.masks import MaskDecoder
from cellseg.data.pipeline.normalize import Normalization
from cellseg.data.pipeline.targets import BinaryTarget, BoundaryTarget, FromChannelTarget, Target
from cellseg.data.sources.base import SegmentationDataModule
from cellseg.data.sources.synthetic import SyntheticDataModule

__all__ = [
    "BinaryTarget",
    "BoundChannels",
    "BoundaryTarget",
    "ChannelStrategy",
    "FromChannelTarget",
    "MaskDecoder",
    "Normalization",
    "SampleSet",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SyntheticDataModule",
    "Target",
]
