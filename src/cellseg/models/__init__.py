"""Every ``model=`` option behind one registry: ``create_model(arch, in_channels, classes, **options)``.

``in_channels`` comes from the channel strategy and ``classes`` from the target, so neither is ever
typed in a model config. Importing this package registers every architecture:

- ``unet``, ``unetplusplus``, ``manet``, ``linknet``, ``fpn``, ``pspnet``, ``pan``, ``deeplabv3``,
  ``deeplabv3plus``, ``upernet``, ``segformer``: segmentation-models-pytorch, any smp/timm encoder;
- ``unet_classic``: Ronneberger's U-Net (depth, width, same/valid padding, BN, upsampling, init);
- ``deconvnet``, ``segskipnet``: seed 000's DeConvNet and its additive-skip variant;
- ``unet_pixelshuffle``: seed 001's ResNet34 U-Net with a pixel-shuffle (ICNR) decoder.
"""

from cellseg.models import deconvnet, pixelshuffle, smp, unet_classic  # noqa: F401  (registration)
from cellseg.models.encoders import encoder_modules, encoder_stages
from cellseg.models.padding import MirrorTile, PadToMultiple
from cellseg.models.registry import ARCHITECTURES, ModelBuilder, create_model, register

__all__ = [
    "ARCHITECTURES",
    "MirrorTile",
    "ModelBuilder",
    "PadToMultiple",
    "create_model",
    "encoder_modules",
    "encoder_stages",
    "register",
]
