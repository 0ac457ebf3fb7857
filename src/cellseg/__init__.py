"""cellseg: config-driven experiments for 2D cell and biomedical image segmentation.

Layers, bottom up (a module imports only its own layer and those below; ``tests/test_layers.py``):

1. ``errors``, ``utils/`` (nothing of cellseg's);
2. ``models/``, ``metrics/``, ``losses/``, ``instances/``, ``postprocess``, ``data/pipeline/``, ``data/io``,
   ``data/downloads``;
3. ``data/sources/``, ``stage_metrics``, ``callbacks/``, ``runs`` (the run-directory contract);
4. ``module`` (the LightningModule), ``inference/``, ``exporters/``, ``evaluation``, ``hparams``,
   ``visualisation/``;
5. ``config`` (checks of the config tree), then ``build`` (config -> objects) and ``cli``;
6. the commands ``train``, ``predict``, ``evaluate``, ``export``, ``stats``, ``show``: they parse their config and
   wire the parts; none imports another.
"""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer version at import time; cellseg never touches the network
# unless a user asks for a download, so switch that off before anything imports it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
