"""A trained checkpoint as one standalone ONNX or TorchScript file, kept only if it computes the same
logits as the PyTorch network.

- :mod:`~.settings`: the options, the checkpoint and the output location, checked before any work;
- :mod:`~.onnx` and :mod:`~.torchscript`: one exporter each, with a runner for the parity check;
- :mod:`~.wrappers`: :class:`~.wrappers.AlwaysPad`, which keeps H and W symbolic through the export;
- :mod:`~.parity`: the exported file's logits against PyTorch's at several input shapes;
- :mod:`~.export`: dynamic first, fixed-size as the fallback, written through a temporary file;
- :mod:`~.bioimageio` (with :mod:`~.package_files`): a BioImage Model Zoo package of both formats,
  kept only when the zoo's model test passes.

How each format is made (chosen by what stays exact on smp U-Nets, measured with torch 2.14):

* onnx: ``torch.onnx.export(dynamo=True)``, the torch.export-based exporter (torch's default since 2.9;
  the TorchScript-based ``dynamo=False`` one is deprecated). Every exporter freezes PadToMultiple's
  Python decisions (pad or not, which mirror mode) at the example's size, so an exported U-Net would
  silently return wrong logits for an H or W that needs other padding. For ``dynamic=true`` the inner
  network is therefore exported behind :class:`AlwaysPad`, which always mirror-pads to the stride with
  symbolic sizes: any batch and any H, W >= the stride, exact.
* torchscript: ``torch.jit.script`` (it keeps the padding logic, so any size works), else
  ``torch.jit.trace`` at ``input_size`` (for networks that cannot be scripted, and for ``dynamic=false``):
  a traced network replays the padding of ``input_size``, so only that H x W is guaranteed.

Parity: the written file is loaded back (onnxruntime CPU / ``torch.jit.load``) and run beside the
PyTorch network on the same seeded random input: 1 x C x H x W at ``input_size`` and, when dynamic, a
batch of 2 at the next larger multiple of the stride and 1 image at a size off the stride. A dynamic
export that fails or is not within ``tolerance`` falls back to a fixed-size one (logged as a warning,
``dynamic: false`` in the JSON); a fixed-size export not within tolerance is an error.
"""

from cellseg.exporters.common import METADATA_KEY, ExportError
from cellseg.exporters.export import export_model
from cellseg.exporters.settings import (
    FORMATS,
    ExportSettings,
    PackageOptions,
    check_options,
    check_settings,
    package_options,
    resolve_settings,
)
from cellseg.exporters.torchscript import read_torchscript_metadata
from cellseg.exporters.wrappers import AlwaysPad

__all__ = [
    "FORMATS",
    "METADATA_KEY",
    "AlwaysPad",
    "ExportError",
    "ExportSettings",
    "PackageOptions",
    "check_options",
    "check_settings",
    "export_model",
    "package_options",
    "read_torchscript_metadata",
    "resolve_settings",
]
