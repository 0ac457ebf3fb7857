"""Segmentation metrics: functional cores (numpy / torch) and thin torchmetrics wrappers for epochs and DDP.

- :mod:`cellseg.metrics.confusion`: pixel Dice, IoU, precision, recall, accuracies (``SegmentationMetrics``);
- :mod:`cellseg.metrics.isbi`: ISBI 2012 V_rand / V_info after thinning and pixel error (``IsbiMetrics``);
- :mod:`cellseg.metrics.instances`: matched-instance precision, recall, F1, AP, PQ (``InstanceMetrics``).
"""

from cellseg.metrics.confusion import SegmentationMetrics, confusion_matrix, scores_from_confusion
from cellseg.metrics.instances import InstanceMetrics, instance_scores
from cellseg.metrics.isbi import IsbiMetrics, isbi_scores

__all__ = [
    "InstanceMetrics",
    "IsbiMetrics",
    "SegmentationMetrics",
    "confusion_matrix",
    "instance_scores",
    "isbi_scores",
    "scores_from_confusion",
]
