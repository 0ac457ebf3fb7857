"""cellseg: config-driven experiments for 2D cell and biomedical image segmentation."""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer version at import time; cellseg never touches the network
# unless a user asks for a download, so switch that off before anything imports it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
