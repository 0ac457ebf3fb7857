"""Data sources, channel strategies, labeling targets and the shared sample pipeline."""

from cellseg.data.channels import ChannelStrategy
from cellseg.data.datamodule import SegmentationDataModule, SyntheticDataModule
from cellseg.data.dataset import SampleSet, SegmentationDataset
from cellseg.data.masks import MaskDecoder
from cellseg.data.normalize import Normalization
from cellseg.data.targets import BinaryTarget, BoundaryTarget, FromChannelTarget, Target

__all__ = [
    "BinaryTarget",
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
