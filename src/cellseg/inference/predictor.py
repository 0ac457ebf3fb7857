"""The stateful wrapper around the functional core: a checkpoint, tile settings, TTA, device and AMP."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from cellseg.data.pipeline.scale import check_scale, resize_planes, scaled_size
from cellseg.errors import ConfigError
from cellseg.inference.blending import Block, blended_blocks, gather_blocks, predict_tiled
from cellseg.inference.checkpoint import LoadedModel, load_model
from cellseg.inference.inputs import InputPipeline
from cellseg.inference.sources import SourceImage
from cellseg.inference.tiling import TileGrid, TileSettings, count_tiles, tile_index
from cellseg.inference.tta import transforms, with_tta
from cellseg.models.padding import input_multiple
from cellseg.postprocess import CrfSettings, crf_reference, dense_crf


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first GPU when there is one, else the CPU; asking for a missing GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but PyTorch sees no CUDA GPU here; use device=cpu or device=auto.")
    return device


class Predictor:
    """Per-class probabilities of new images, prepared and tiled exactly as configured.

    AMP (bf16 where the GPU supports it, else fp16) is used on CUDA only; probabilities are always
    accumulated in float32. ``channel_names`` names the planes of the images to predict when they
    differ from the training images' (see :class:`~cellseg.inference.inputs.InputPipeline`).
    ``postprocess`` (``postprocess=crf``) refines the class probabilities of each whole image with a
    dense CRF, once, after the tiles are blended and the TTA passes averaged; regression maps are kept.
    ``scale`` resizes each image before the network and its outputs back to the image's size (default:
    the checkpoint's ``data.scale``, see :mod:`cellseg.data.pipeline.scale`); give 1.0 for images a data
    module has already resized. A resized image is predicted whole rather than streamed.
    """

    def __init__(
        self,
        model: LoadedModel,
        tiles: TileSettings | None = None,
        tta: str = "none",
        device: str | torch.device = "auto",
        amp: bool = True,
        channel_names: Sequence[str] | None = None,
        postprocess: CrfSettings | None = None,
        scale: float | None = None,
    ) -> None:
        self.passes = len(transforms(tta))  # network passes per tile; an unknown mode fails here
        self.model = model
        self.tiles = (tiles or TileSettings()).for_outputs(model.layout.has_regression)
        self.tta = tta
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.model.net.to(self.device).eval()
        # The input files' planes; by default the checkpoint's. Specs bind to them by name, so files
        # may lack planes the model never reads (a stain that was only the training target).
        self.inputs = InputPipeline.from_pipeline(model.pipeline, channel_names)
        self.multiple = input_multiple(model.net)
        self.layout = model.layout
        self.postprocess = postprocess
        self.scale = check_scale(model.scale if scale is None else scale, "scale")
        self._predict_batch = with_tta(self._activated, tta, vectors=self.layout.vector_pairs)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: object) -> Predictor:
        return cls(load_model(path), **kwargs)  # type: ignore[arg-type]

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Names of the planes each input image must have, in order."""
        return self.inputs.channel_names

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.class_names

    def _activated(self, tiles: torch.Tensor) -> torch.Tensor:
        """Class probabilities and regression maps of a batch of tiles (the layout's activation)."""
        if self.amp:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                raw = self.model.net(tiles)
        else:
            raw = self.model.net(tiles)
        return self.layout.activate(raw)

    @property
    def streams(self) -> bool:
        """Whether :meth:`blocks` applies: images are predicted at their own size."""
        return self.scale == 1.0

    def tiles_for(self, height: int, width: int) -> int:
        """Tiles of one image (for progress bars); each costs one network pass per TTA transform."""
        return count_tiles(*scaled_size(height, width, self.scale), self.tiles, self.multiple)

    def outputs(self, source: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(K + R, H, W) float32: class probabilities, then the target's regression maps (distance, flows),
        of a source image (C, H, W) with the checkpoint's channels; tiles are blended, then decoded whole,
        so a cell across a tile border is one cell."""
        return self.outputs_of_input(self.inputs(source), progress)

    def outputs_of_input(
        self, model_input: np.ndarray, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Like :meth:`outputs` for an image that is already model input (C_in, H, W) float32."""
        height, width = model_input.shape[-2:]
        network_input = resize_planes(model_input, *scaled_size(height, width, self.scale))
        outputs = predict_tiled(
            self._predict_batch, network_input, self.tiles, self.device, progress, self.multiple
        )
        return self._refined(resize_planes(outputs, height, width), lambda: model_input)

    def _refined(self, outputs: np.ndarray, model_input: Callable[[], np.ndarray]) -> np.ndarray:
        """The outputs with their class probabilities refined by the CRF (``postprocess``), which sees the
        whole image with the model input as its reference (made only when a CRF is configured)."""
        if self.postprocess is not None:
            classes = self.layout.num_classes
            outputs[:classes] = dense_crf(outputs[:classes], crf_reference(model_input()), self.postprocess)
        return outputs

    def blocks(self, source: SourceImage, progress: Callable[[int], None] | None = None) -> Iterator[Block]:
        """The outputs (K + R planes) of a source image read a tile at a time, as final blocks top to
        bottom (:func:`~cellseg.inference.blending.blended_blocks`): memory does not grow with the image.
        Call ``source.measure()`` first to choose the sample (else the default one is used). The CRF
        (``postprocess``) needs the whole image: see :meth:`outputs_of_source`. Only for a predictor that
        :attr:`streams`."""
        if not self.streams:
            raise ValueError(
                f"A predictor with scale {self.scale} resizes whole images; it cannot stream blocks."
            )
        height, width = source.shape
        grid = TileGrid.plan(height, width, self.tiles, self.multiple)
        return blended_blocks(
            self._predict_batch,
            lambda top, left: source.region(tile_index(top, left, grid)),
            grid,
            self.tiles,
            self.device,
            progress,
        )

    def outputs_of_source(
        self, source: SourceImage, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Like :meth:`outputs` for a source image read a tile at a time: (K + R, H, W) float32 held whole,
        refined by the CRF where one is configured (which reads the whole model input)."""
        height, width = source.shape
        whole = (slice(0, height), slice(0, width))
        if not self.streams:
            return self.outputs_of_input(source.region(whole).numpy(), progress)
        outputs = gather_blocks(self.blocks(source, progress), height, width)
        return self._refined(outputs, lambda: source.region(whole).numpy())

    def probabilities(self, source: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(K, H, W) float32 class probabilities of a source image (C, H, W) with the checkpoint's channels."""
        return self.layout.split_array(self.outputs(source, progress))[0]

    def probabilities_of_input(
        self, model_input: np.ndarray, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Like :meth:`probabilities` for an image that is already model input (C_in, H, W) float32."""
        return self.layout.split_array(self.outputs_of_input(model_input, progress))[0]
