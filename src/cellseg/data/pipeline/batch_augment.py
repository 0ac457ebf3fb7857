"""Augmentation of a training batch on its device, after the transfer (``augmentation.device=gpu``).

Why: albumentations augments one sample at a time in the loader workers; its elastic deformation alone
(preset 0) costs about 50 ms per 512 x 512 image on one core of the 2-core test machine, which starves a
GPU. Here the same transforms run on the whole batch where it already is (on a CPU too, which is how
the tests run it).

**The same transforms.** The pipeline is made from the albumentations ``Compose`` the CPU path would run
(:meth:`BatchAugmentation.from_albumentations`), reading each transform's own settings, so the presets
(``basic``'s list, seed 004's elastic sets, fastai's defaults) and their ranges cannot drift apart. Each
step reproduces albumentations 2.0's geometry: the same matrices (centre at ``size / 2 - 0.5``, the same
rotation sign, translations truncated to whole pixels, Perspective's corner jitter and its resize), the
same border rule and the same probabilities. The random numbers are torch's, not albumentations', so
the two paths draw from the same distributions, not the same values.

**How.** Every geometric step is a map from its output pixels back to its input pixels: a 3 x 3 matrix
(flips, 90-degree rotations, affine, corner-jitter affine, perspective) or a displacement field
(elastic). They are chained from the last step to the first, each result folded back into the image as
that step's border rule extends it (reflect-101: mirrored about the edge pixels; replicate: clamped),
so the chain reaches exactly the source pixels the CPU steps, one warp after the other, would reach.
The batch is then sampled once: bilinear for the image, nearest neighbour for the classes, the instance
ids (ignore regions included: -1 and ``ignore_index`` move with them) and the weight map, as
albumentations treats masks; labels therefore keep their values and stay aligned with each other. One
resampling instead of one per step leaves the image slightly sharper than the CPU path does.
Brightness/contrast touches only the image, after the warp, as in every preset (it is pointwise: its
place in the list matters only by interpolation).

**Regression targets** (``target=distance``, ``target=flows``) are made by the data set from the cropped
instance ids, then moved here; recomputing them on the device is not possible cheaply (the flows'
heat diffusion costs ~14 ms per 256 px crop on a CPU core). Flips and 90-degree rotations move them
exactly: flow vectors are turned by the transform (the flows of a flipped cell are its flipped flows).
Under affine, perspective and elastic warps they are approximations of what recomputing from the warped
cells would give: distances are resampled (bilinear, 0 off cells), so a cell stretched unevenly keeps
the distances of its unstretched shape; flows are resampled with the labels (nearest) and each vector v
becomes J^T v rescaled to its length, J being the local Jacobian of the map from output to source pixels:
that is the gradient direction of the warped heat, so every pixel still flows to its own cell's (moved)
centre where the warp does not fold over, but it is not the heat diffusion of the warped shape. Cellpose moves its flows the same way.
Mirrored borders mirror the vectors too. The weight map is moved with the pixels, as on the CPU path
(it is computed once, from the whole image's cells).

**Randomness.** Each sample carries ``augment_seed``, drawn by the data set from (seed, epoch, sample):
its parameters come from a CPU ``torch.Generator`` seeded with it, so a sample is augmented the same
whatever the batch it is in, the loader workers, the DDP rank or the device, and a resumed run draws
what the uninterrupted one drew. The elastic noise fields are drawn on the batch's device from a
generator seeded from the sample's seed: the same on the same kind of device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cellseg.data.pipeline.augment import CornerJitterAffine
from cellseg.data.pipeline.dataset import AUGMENT_SEED
from cellseg.errors import ConfigError

Params = dict[str, torch.Tensor]

#: Border rules of albumentations (OpenCV flags) that the batch path reproduces.
BORDERS = {cv2.BORDER_REFLECT_101: "reflect101", cv2.BORDER_REPLICATE: "replicate"}
#: How each regression map of a target moves (see the module docstring).
REGRESSION_MAPS = {"distance": "scalar", "flow_y": "vector", "flow_x": "vector"}
INSTALL_HINT = 'pip install "cellseg[gpu]"'


def require_kornia() -> Any:
    """kornia (Gaussian blur of the elastic fields, perspective matrices), or a ConfigError naming the extra."""
    try:
        import kornia
    except ImportError as error:
        raise ConfigError(
            f"augmentation.device=gpu needs kornia, which is not installed: {INSTALL_HINT} "
            "(or augmentation.device=cpu)."
        ) from error
    return kornia


def derived_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for a sub-stream of ``seed`` (e.g. one step's noise field), unrelated to its neighbours'."""
    return int(np.random.SeedSequence([seed % 2**63, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


# --- coordinates --------------------------------------------------------------------------------------


def pixel_grid(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(B, H, W, 2) pixel coordinates (x, y) of every output pixel."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1).expand(batch, height, width, 2)


def _grid(points: torch.Tensor | None, frame: Frame) -> torch.Tensor:
    """The points, or the output pixel grid where the chain has not moved them yet."""
    return frame.grid() if points is None else points


def identity_jacobian(points: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 2, 2) identity matrices, one per point."""
    return torch.eye(2, device=points.device, dtype=points.dtype).expand(*points.shape[:-1], 2, 2)


def fold(
    points: torch.Tensor, height: int, width: int, border: str, signs: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Points brought back into the image as the border rule extends it, and (when ``signs``) the sign
    (+-1, per axis) of the fold's derivative: a mirrored stretch reverses vectors along its axis, a clamp
    keeps them.

    reflect-101 mirrors about the edge pixels' centres (period 2 (n - 1)); linear interpolation of the
    mirrored image at x equals that of the image at the folded x, so folding then sampling once is what
    sampling the extended image would give."""
    last = torch.tensor([width - 1, height - 1], device=points.device, dtype=points.dtype)
    if border == "replicate":
        return torch.minimum(points.clamp_min(0), last), torch.ones_like(points) if signs else None
    period = 2 * last
    # torch.remainder, at under half its cost on a CPU core
    phase = points - period * torch.floor(points / period)
    folded = last - (phase - last).abs()
    return folded, torch.where(phase > last, -1.0, 1.0).to(points.dtype) if signs else None


def through_homography(
    matrix: torch.Tensor, points: torch.Tensor, jacobian: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Points (B, H, W, 2) mapped by per-sample 3 x 3 matrices (B, 3, 3) (one batched matrix product),
    and the map's Jacobian when asked."""
    flat = points.reshape(len(matrix), -1, 2)
    homogeneous = torch.baddbmm(matrix[:, None, :, 2], flat, matrix[:, :, :2].transpose(1, 2))
    moved = (homogeneous[..., :2] / homogeneous[..., 2:]).reshape(points.shape)
    if not jacobian:
        return moved, None
    # d(a / w) / dp = (A - q w') / w, row by row (exact for perspective maps, constant for affine ones).
    m = matrix[:, None, None]
    rows = m[..., :2, :2] - moved[..., :, None] * m[..., 2:3, :2]
    return moved, rows / homogeneous[..., 2].reshape(*points.shape[:-1], 1, 1)


def normalised(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates as grid_sample's [-1, 1] (align_corners=True: -1 and 1 are the edge pixels' centres)."""
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], device=points.device)
    return points * scale - 1.0


def sample_bilinear(values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) float maps read at points (B, H, W, 2) inside the image, bilinearly."""
    height, width = values.shape[-2:]
    grid = normalised(points, height, width).to(values.dtype)
    return F.grid_sample(values, grid, mode="bilinear", padding_mode="border", align_corners=True)


def nearest_pixels(points: torch.Tensor) -> torch.Tensor:
    """(B, H * W) flat index of the pixel nearest to each point (B, H, W, 2) (shared by every map read)."""
    height, width = points.shape[1:3]
    x = torch.floor(points[..., 0] + 0.5).clamp_(0, width - 1)
    y = torch.floor(points[..., 1] + 0.5).clamp_(0, height - 1)
    return (y * width + x).long().reshape(len(points), -1)


def sample_nearest(values: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) maps of any dtype read at the pixels of :func:`nearest_pixels`: an index gather, so
    labels keep their exact values (no float round trip, any id)."""
    batch, channels = values.shape[:2]
    index = pixels[:, None].expand(batch, channels, -1)
    return values.reshape(batch, channels, -1).gather(2, index).reshape(values.shape)


# --- steps --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """The batch's samples: how many, their size and their device."""

    batch: int
    height: int
    width: int
    device: torch.device

    def grid(self) -> torch.Tensor:
        return pixel_grid(self.batch, self.height, self.width, self.device)


@dataclass(frozen=True)
class Draw:
    """What a step draws its parameters from: ``uniforms`` (B, draws) in [0, 1), float64 on the CPU, from
    each sample's generator; ``apply`` (B,) whether the step acts on each sample; the samples' ``seeds``
    and the step's ``position`` (for fields drawn on the device)."""

    uniforms: torch.Tensor
    apply: torch.Tensor
    seeds: tuple[int, ...]
    position: int
    frame: Frame


@dataclass(frozen=True, kw_only=True)
class Step(ABC):
    """One transform: applied to each sample with probability ``p``, with parameters drawn per sample."""

    p: float
    #: Uniform numbers a step needs per sample (besides the one that decides whether it applies).
    draws: ClassVar[int] = 0

    @abstractmethod
    def parameters(self, draw: Draw) -> Params:
        """The step's parameters for each sample of the batch (leading dimension B)."""


@dataclass(frozen=True, kw_only=True)
class Geometric(Step):
    """A step that moves pixels; ``border`` is how the image is extended beyond its edges."""

    border: str = "reflect101"


class Homography(Geometric):
    """A geometric step given by one 3 x 3 matrix per sample, in OpenCV's sense: input to output pixels."""

    #: True for steps that only permute the pixels (flips, quarter turns): nothing to fold after them.
    stays_inside: ClassVar[bool] = False

    @abstractmethod
    def forward_matrix(self, params: Params, height: int, width: int) -> torch.Tensor:
        """(B, 3, 3) float64 matrices mapping input pixel (x, y, 1) to output pixel."""

    def inverse_matrix(self, params: Params, frame: Frame) -> torch.Tensor:
        """(B, 3, 3) float32 matrices on the batch's device from output to input pixels (the identity for
        samples the step does not apply to)."""
        forward = self.forward_matrix(params, frame.height, frame.width)
        forward = torch.where(params["apply"][:, None, None], forward, torch.eye(3, dtype=forward.dtype))
        return torch.linalg.inv(forward).to(device=frame.device, dtype=torch.float32)


def _uniform(u: torch.Tensor, bounds: Sequence[float]) -> torch.Tensor:
    """Uniforms in [0, 1) scaled to [low, high)."""
    low, high = float(bounds[0]), float(bounds[1])
    return low + (high - low) * u


def _matrices(rows: Sequence[Sequence[torch.Tensor | float]], batch: int) -> torch.Tensor:
    """(B, 3, 3) float64 from nested rows of per-sample tensors (B,) or numbers."""
    return torch.stack(
        [
            torch.stack([torch.as_tensor(v, dtype=torch.float64).expand(batch) for v in row], -1)
            for row in rows
        ],
        -2,
    )


@dataclass(frozen=True, kw_only=True)
class Flip(Homography):
    """albumentations' HorizontalFlip (``axis='x'``) or VerticalFlip (``axis='y'``)."""

    axis: str
    stays_inside: ClassVar[bool] = True

    def parameters(self, draw: Draw) -> Params:
        return {}

    def forward_matrix(self, params: Params, height: int, width: int) -> torch.Tensor:
        flip = (
            [[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]]
            if self.axis == "x"
            else [[1, 0, 0], [0, -1, height - 1], [0, 0, 1]]
        )
        return _matrices(flip, len(params["apply"]))


@dataclass(frozen=True, kw_only=True)
class Rot90(Homography):
    """albumentations' RandomRotate90: ``np.rot90`` by k = 0..3 quarter turns, k uniform."""

    draws: ClassVar[int] = 1
    stays_inside: ClassVar[bool] = True

    def parameters(self, draw: Draw) -> Params:
        if draw.frame.height != draw.frame.width:
            raise ConfigError(
                f"augmentation.device=gpu: RandomRotate90 needs square samples to keep the batch's shape, "
                f"got {draw.frame.height} x {draw.frame.width}; set data.crop_size (or augmentation.device=cpu)."
            )
        return {"k": torch.clamp(torch.floor(4 * draw.uniforms[:, 0]), max=3).long()}

    def forward_matrix(self, params: Params, height: int, width: int) -> torch.Tensor:
        # np.rot90: output (x, y) = input (x' = n - 1 - y, y' = x), i.e. input (x', y') -> (y', n - 1 - x').
        quarter = torch.tensor(
            [[0.0, 1.0, 0.0], [-1.0, 0.0, width - 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64
        )
        powers = torch.stack([torch.linalg.matrix_power(quarter, k) for k in range(4)])
        return powers[params["k"]]


@dataclass(frozen=True, kw_only=True)
class Affine(Homography):
    """albumentations' Affine (fit_output=False): independent x and y scales unless ``keep_ratio``,
    rotation and shear in degrees, translation as a share of the size truncated to whole pixels (or
    whole pixels drawn from ``translate_px``), about the centre (size / 2 - 0.5)."""

    scale_x: tuple[float, float]
    scale_y: tuple[float, float]
    keep_ratio: bool
    rotate: tuple[float, float]
    shear_x: tuple[float, float]
    shear_y: tuple[float, float]
    translate_percent: tuple[tuple[float, float], tuple[float, float]] | None
    translate_px: tuple[tuple[int, int], tuple[int, int]] | None
    draws: ClassVar[int] = 7

    def parameters(self, draw: Draw) -> Params:
        u = draw.uniforms
        if self.translate_px is not None:
            (x_low, x_high), (y_low, y_high) = self.translate_px
            tx = torch.floor(x_low + (x_high - x_low + 1) * u[:, 0])
            ty = torch.floor(y_low + (y_high - y_low + 1) * u[:, 1])
        elif self.translate_percent is not None:
            tx = torch.trunc(_uniform(u[:, 0], self.translate_percent[0]) * draw.frame.width)
            ty = torch.trunc(_uniform(u[:, 1], self.translate_percent[1]) * draw.frame.height)
        else:
            tx = ty = torch.zeros(len(u), dtype=torch.float64)
        scale_x = _uniform(u[:, 4], self.scale_x)
        return {
            "translate_x": tx,
            "translate_y": ty,
            "shear_x": -_uniform(u[:, 2], self.shear_x),  # albumentations negates the drawn shear
            "shear_y": -_uniform(u[:, 3], self.shear_y),
            "scale_x": scale_x,
            "scale_y": scale_x if self.keep_ratio else _uniform(u[:, 5], self.scale_y),
            "angle": _uniform(u[:, 6], self.rotate),
        }

    def forward_matrix(self, params: Params, height: int, width: int) -> torch.Tensor:
        # albumentations.augmentations.geometric.functional.create_affine_transformation_matrix
        batch = len(params["angle"])
        cx, cy = width / 2 - 0.5, height / 2 - 0.5
        angle = torch.deg2rad(params["angle"])
        cos, sin = torch.cos(angle), torch.sin(angle)
        shear_x, shear_y = (
            torch.tan(torch.deg2rad(params["shear_x"])),
            torch.tan(torch.deg2rad(params["shear_y"])),
        )
        to_corner = _matrices([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], batch)
        scale = _matrices([[params["scale_x"], 0, 0], [0, params["scale_y"], 0], [0, 0, 1]], batch)
        rotate = _matrices([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]], batch)
        shear = _matrices([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]], batch)
        back = _matrices(
            [[1, 0, cx + params["translate_x"]], [0, 1, cy + params["translate_y"]], [0, 0, 1]], batch
        )
        return back @ shear @ rotate @ scale @ to_corner


@dataclass(frozen=True, kw_only=True)
class CornerJitter(Homography):
    """Seed 004's random affine (:class:`~cellseg.data.pipeline.augment.CornerJitterAffine`): three points
    of a centred square (centre +- a third of the shorter side) each move by U(-alpha_affine, alpha_affine)."""

    alpha_affine: float
    draws: ClassVar[int] = 6

    def parameters(self, draw: Draw) -> Params:
        jitter = _uniform(draw.uniforms, (-self.alpha_affine, self.alpha_affine))
        return {"jitter": jitter.reshape(-1, 3, 2)}  # (x, y) of each of the three points

    @staticmethod
    def source_points(height: int, width: int) -> torch.Tensor:
        """(3, 2) points (x, y) as CornerJitterAffine places them."""
        cy, cx, half = height / 2, width / 2, min(height, width) // 3
        return torch.tensor(
            [[cx + half, cy + half], [cx - half, cy + half], [cx - half, cy - half]], dtype=torch.float64
        )

    def forward_matrix(self, params: Params, height: int, width: int) -> torch.Tensor:
        source = self.source_points(height, width).expand(len(params["jitter"]), 3, 2)
        target = source + params["jitter"]
        # The affine map taking each source point to its target (cv2.getAffineTransform, batched).
        homogeneous = torch.cat([source, torch.ones_like(source[..., :1])], dim=-1)
        top = torch.linalg.solve(homogeneous, target).transpose(1, 2)
        bottom = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(len(top), 1, 3)
        return torch.cat([top, bottom], dim=1)


@dataclass(frozen=True, kw_only=True)
class Perspective(Homography):
    """albumentations' Perspective (keep_size=True, fit_output=False): each corner moves inwards by
    |N(0, s)| mod 0.32 of the size, s ~ U(scale); the quadrilateral is mapped onto the image, then
    stretched by size / (the quadrilateral's longer opposite side, truncated), as albumentations 2.0
    does (a zoom towards the top-left corner)."""

    scale: tuple[float, float]
    draws: ClassVar[int] = 9

    def parameters(self, draw: Draw) -> Params:
        spread = _uniform(draw.uniforms[:, 0], self.scale)
        # N(0, s) from uniforms by the inverse normal CDF (kept off 0 and 1, where it is infinite).
        normal = torch.special.ndtri(draw.uniforms[:, 1:].clamp(1e-12, 1 - 1e-12)) * spread[:, None]
        jitter = torch.remainder(normal.abs(), 0.32).reshape(-1, 4, 2)
        inward = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
        # top-left, top-right, bottom-right, bottom-left as fractions of (width, height)
        corners = inward + torch.where(inward > 0, -jitter, jitter)
        size = torch.tensor([draw.frame.width, draw.frame.height], dtype=torch.float64)
        return {"spread": spread, "corners": corners * size}

    def forward_matrix(self, params: Params, height: int, width: int) -> torch.Tensor:
        kornia = require_kornia()
        corners = params["corners"]
        top_left, top_right, bottom_right, bottom_left = corners.unbind(1)
        side_width = torch.maximum(
            (top_right - top_left).norm(dim=-1), (bottom_right - bottom_left).norm(dim=-1)
        )
        side_height = torch.maximum(
            (bottom_right - top_right).norm(dim=-1), (bottom_left - top_left).norm(dim=-1)
        )
        image = torch.tensor([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]], dtype=torch.float64)
        onto = kornia.geometry.transform.get_perspective_transform(corners, image.expand_as(corners))
        stretch = _matrices(
            [[width / torch.trunc(side_width), 0, 0], [0, height / torch.trunc(side_height), 0], [0, 0, 1]],
            len(corners),
        )
        return stretch @ onto.to(torch.float64)


@dataclass(frozen=True, kw_only=True)
class Elastic(Geometric):
    """albumentations' ElasticTransform (Simard et al. 2003): each output pixel x samples x + d(x), with
    d = alpha * (noise smoothed by a Gaussian of ``sigma`` px, replicated borders); noise U(-1, 1), or N(0, 1)
    divided by its largest magnitude. The kernel is OpenCV's automatic size for float images
    (:func:`opencv_kernel_size`), or 17 px when ``approximate``. albumentations blurs the dx and dy fields
    stacked into one array, so each bleeds into the other over the kernel's radius where they meet; here
    each is blurred on its own."""

    alpha: float
    sigma: float
    kernel_size: int
    noise: str = "uniform"
    same_dxdy: bool = False

    def parameters(self, draw: Draw) -> Params:
        frame = draw.frame
        fields = torch.zeros(frame.batch, 2, frame.height, frame.width, device=frame.device)
        applied = [i for i, on in enumerate(draw.apply.tolist()) if on]  # the others stay in place
        if applied:
            fields[applied] = self.displacement(torch.stack([self._noise(draw, i) for i in applied]))
        return {"field": fields}

    def displacement(self, noise: torch.Tensor) -> torch.Tensor:
        """(N, 2, H, W) fields (dx, dy) in pixels from noise (N, 1 or 2, H, W): smoothed, scaled by alpha."""
        kornia = require_kornia()
        size, sigma = (self.kernel_size, self.kernel_size), (self.sigma, self.sigma)
        smooth = kornia.filters.gaussian_blur2d(noise, size, sigma, border_type="replicate")
        return self.alpha * smooth.expand(-1, 2, -1, -1)

    def _noise(self, draw: Draw, sample: int) -> torch.Tensor:
        """One sample's noise (1 or 2, H, W), from its own generator on the batch's device."""
        device = draw.frame.device
        generator = torch.Generator(device=device).manual_seed(
            derived_seed(draw.seeds[sample], draw.position)
        )
        shape = (1 if self.same_dxdy else 2, draw.frame.height, draw.frame.width)
        if self.noise == "uniform":
            return torch.rand(shape, generator=generator, device=device) * 2 - 1
        values = torch.randn(shape, generator=generator, device=device)
        return values / values.abs().max().clamp_min(1e-6)

    def backward(
        self, params: Params, points: torch.Tensor | None, jacobian: bool, frame: Frame
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Where the step's output points (None: its output pixel grid) come from in its input, and the
        Jacobian of that map when asked (samples it does not apply to have a zero field)."""
        fields = params["field"]  # (B, 2, H, W): (dx, dy) at the step's output pixels
        gradients = None
        if jacobian:  # d(dx, dy) / d(x, y): (B, 4, H, W) as ddx/dx, ddx/dy, ddy/dx, ddy/dy
            along_y, along_x = torch.gradient(fields, dim=(2, 3))
            gradients = torch.stack([along_x[:, 0], along_y[:, 0], along_x[:, 1], along_y[:, 1]], dim=1)
        if points is None:
            points = frame.grid()
        else:  # read the fields where the later steps' points fall
            fields = sample_bilinear(fields, points)
            gradients = sample_bilinear(gradients, points) if gradients is not None else None
        moved = points + fields.permute(0, 2, 3, 1)
        if gradients is None:
            return moved, None
        return moved, identity_jacobian(points) + gradients.permute(0, 2, 3, 1).reshape(
            *points.shape[:-1], 2, 2
        )


@dataclass(frozen=True, kw_only=True)
class BrightnessContrast(Step):
    """albumentations' RandomBrightnessContrast on float images: x * (1 + c) + b, c ~ U(contrast),
    b ~ U(brightness) (brightness_by_max: times 1, the float maximum), then clipped to [0, 1] as
    albumentations clips float images (normalisations that reach beyond 0..1 are refused with it, see
    :func:`cellseg.build.check_augmentation_keeps_intensities`)."""

    brightness: tuple[float, float]
    contrast: tuple[float, float]
    draws: ClassVar[int] = 2

    def parameters(self, draw: Draw) -> Params:
        return {
            "alpha": 1.0 + _uniform(draw.uniforms[:, 0], self.contrast),
            "beta": _uniform(draw.uniforms[:, 1], self.brightness),
        }

    def apply_to_image(self, params: Params, image: torch.Tensor) -> torch.Tensor:
        shape = (-1, *([1] * (image.dim() - 1)))
        alpha = params["alpha"].to(image).view(shape)
        beta = params["beta"].to(image).view(shape)
        applied = params["apply"].to(image.device).view(shape)
        return torch.where(applied, (image * alpha + beta).clamp(0.0, 1.0), image)


# --- from albumentations ------------------------------------------------------------------------------


def _require(transform: Any, name: str, expected: Any) -> None:
    """The transform's setting ``name`` has the one value the batch path reproduces, else a ConfigError."""
    value = getattr(transform, name)
    if value != expected:
        raise ConfigError(
            f"augmentation.device=gpu reproduces {type(transform).__name__} with {name}={expected!r} only, "
            f"got {name}={value!r}; change it or use augmentation.device=cpu."
        )


def _border(transform: Any) -> str:
    if transform.border_mode not in BORDERS:
        raise ConfigError(
            f"augmentation.device=gpu: {type(transform).__name__}(border_mode={transform.border_mode}) is not "
            f"reproduced; border_mode must be {cv2.BORDER_REFLECT_101} (reflect-101) or "
            f"{cv2.BORDER_REPLICATE} (replicate), or use augmentation.device=cpu."
        )
    return BORDERS[transform.border_mode]


def _interpolations(transform: Any) -> None:
    _require(transform, "interpolation", cv2.INTER_LINEAR)
    _require(transform, "mask_interpolation", cv2.INTER_NEAREST)


def _pair(value: Sequence[float]) -> tuple[float, float]:
    return float(value[0]), float(value[1])


def _affine(t: A.Affine) -> Affine:
    _interpolations(t)
    _require(t, "fit_output", False)
    _require(t, "balanced_scale", False)
    percent, pixels = t.translate_percent, t.translate_px
    return Affine(
        scale_x=_pair(t.scale["x"]),
        scale_y=_pair(t.scale["y"]),
        keep_ratio=bool(t.keep_ratio),
        rotate=_pair(t.rotate),
        shear_x=_pair(t.shear["x"]),
        shear_y=_pair(t.shear["y"]),
        translate_percent=(_pair(percent["x"]), _pair(percent["y"])) if percent is not None else None,
        translate_px=(tuple(pixels["x"]), tuple(pixels["y"])) if pixels is not None else None,  # type: ignore[arg-type]
        border=_border(t),
        p=t.p,
    )


def opencv_kernel_size(sigma: float) -> int:
    """cv2.GaussianBlur's kernel size for float images when none is given: round(8 sigma + 1), odd."""
    return round(sigma * 8 + 1) | 1


def _elastic(t: A.ElasticTransform) -> Elastic:
    _interpolations(t)
    return Elastic(
        alpha=float(t.alpha),
        sigma=float(t.sigma),
        kernel_size=17 if t.approximate else opencv_kernel_size(float(t.sigma)),
        noise=t.noise_distribution,
        same_dxdy=bool(t.same_dxdy),
        border=_border(t),
        p=t.p,
    )


def _perspective(t: A.Perspective) -> Perspective:
    _interpolations(t)
    _require(t, "keep_size", True)
    _require(t, "fit_output", False)
    return Perspective(scale=_pair(t.scale), border=_border(t), p=t.p)


def _brightness_contrast(t: A.RandomBrightnessContrast) -> BrightnessContrast:
    _require(t, "brightness_by_max", True)
    _require(t, "ensure_safe_range", False)
    return BrightnessContrast(brightness=_pair(t.brightness_limit), contrast=_pair(t.contrast_limit), p=t.p)


#: albumentations transforms (exact types) and their batch steps.
TRANSLATIONS: dict[type, Callable[[Any], Step]] = {
    A.HorizontalFlip: lambda t: Flip(axis="x", p=t.p),
    A.VerticalFlip: lambda t: Flip(axis="y", p=t.p),
    A.RandomRotate90: lambda t: Rot90(p=t.p),
    A.Affine: _affine,
    CornerJitterAffine: lambda t: CornerJitter(alpha_affine=float(t.alpha_affine), p=t.p),
    A.ElasticTransform: _elastic,
    A.Perspective: _perspective,
    A.RandomBrightnessContrast: _brightness_contrast,
}


def steps_from_albumentations(pipeline: A.Compose) -> tuple[Step, ...]:
    """The batch steps of an albumentations Compose, each with the transform's own settings."""
    if type(pipeline) is not A.Compose:
        raise ConfigError(
            f"augmentation.device=gpu needs an albumentations Compose, got {type(pipeline).__name__}."
        )
    _require(pipeline, "p", 1.0)
    steps = []
    for transform in pipeline.transforms:
        translate = TRANSLATIONS.get(type(transform))
        if translate is None:
            known = ", ".join(sorted(kind.__name__ for kind in TRANSLATIONS))
            raise ConfigError(
                f"augmentation.device=gpu has no batch version of {type(transform).__name__}; it has {known} "
                "(or use augmentation.device=cpu)."
            )
        steps.append(translate(transform))
    return tuple(steps)


# --- the pipeline -------------------------------------------------------------------------------------


def _vector_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """(y, x) indices of the vector fields among regression maps (``<name>_y`` next to ``<name>_x``)."""
    pairs = []
    for index, name in enumerate(names):
        if REGRESSION_MAPS.get(name) == "vector" and name.endswith("_y"):
            partner = name[:-2] + "_x"
            if partner not in names:
                raise ConfigError(f"augmentation.device=gpu: regression map {name} comes without {partner}.")
            pairs.append((index, list(names).index(partner)))
    return pairs


@dataclass(frozen=True)
class BatchAugmentation:
    """The augmentation of a training batch on its device: ``augment(batch) -> batch``.

    ``steps`` in albumentations' order; ``regression_names`` the target's regression maps (each must be
    one whose move is known, see :data:`REGRESSION_MAPS`)."""

    steps: tuple[Step, ...]
    regression_names: tuple[str, ...] = ()
    vector_pairs: list[tuple[int, int]] = field(init=False, repr=False, compare=False)
    #: Tells the data set to stop after the crop and hand each sample's seed on (see SegmentationDataset).
    on_batch: ClassVar[bool] = True

    def __post_init__(self) -> None:
        unknown = [name for name in self.regression_names if name not in REGRESSION_MAPS]
        if unknown:
            raise ConfigError(
                f"augmentation.device=gpu cannot move the regression map(s) {', '.join(unknown)} (it moves "
                f"{', '.join(REGRESSION_MAPS)}); use augmentation.device=cpu."
            )
        object.__setattr__(self, "vector_pairs", _vector_pairs(self.regression_names))

    @classmethod
    def from_albumentations(
        cls, pipeline: A.Compose, regression_names: Sequence[str] = ()
    ) -> BatchAugmentation:
        """The batch version of the albumentations pipeline the CPU path would run."""
        require_kornia()
        return cls(steps_from_albumentations(pipeline), tuple(regression_names))

    def draw(self, seeds: Sequence[int], frame: Frame) -> list[Params]:
        """Each step's parameters for the samples seeded ``seeds``, with ``apply`` (B,) bool: whether it
        acts. Every step draws for every sample, applied or not, so one step's draws never shift another's."""
        total = sum(1 + step.draws for step in self.steps)
        rows = [
            torch.rand(total, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
            for s in seeds
        ]
        uniforms = torch.stack(rows) if rows else torch.zeros(0, total, dtype=torch.float64)
        drawn, start = [], 0
        for position, step in enumerate(self.steps):
            apply = uniforms[:, start] < step.p
            columns = uniforms[:, start + 1 : start + 1 + step.draws]
            start += 1 + step.draws
            drawn.append(
                {"apply": apply, **step.parameters(Draw(columns, apply, tuple(seeds), position, frame))}
            )
        return drawn

    def source_points(
        self, drawn: Sequence[Params], frame: Frame, jacobian: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """For every output pixel, the input pixel it comes from (B, H, W, 2) after all geometric steps,
        and the Jacobian (B, H, W, 2, 2) of that map when asked."""
        points, total, pending = None, None, None

        def moved(
            step_points: torch.Tensor, step_jacobian: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor | None]:
            """The chain so far followed by one more map (chain rule: J = J_step @ J)."""
            if not jacobian or total is None:
                return step_points, step_jacobian
            return step_points, step_jacobian @ total

        for step, params in zip(reversed(self.steps), reversed(drawn), strict=True):
            if isinstance(step, Homography):
                inverse = step.inverse_matrix(params, frame)
                pending = inverse if pending is None else inverse @ pending
                if step.stays_inside:  # merged with the matrices that follow: one pass over the points
                    continue
                step_points, step_jacobian = through_homography(pending, _grid(points, frame), jacobian)
                pending = None
            elif isinstance(step, Elastic):
                if pending is not None:
                    points, total = moved(*through_homography(pending, _grid(points, frame), jacobian))
                    pending = None
                step_points, step_jacobian = step.backward(params, points, jacobian, frame)
            else:
                continue
            points, total = moved(step_points, step_jacobian)
            points, signs = fold(points, frame.height, frame.width, step.border, signs=jacobian)
            if total is not None and signs is not None:
                total = total * signs[..., :, None]  # diag(signs) @ J
        if pending is not None:
            points, total = moved(*through_homography(pending, _grid(points, frame), jacobian))
        points = _grid(points, frame)
        if jacobian and total is None:
            total = identity_jacobian(points)
        return points, total

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch augmented: image, ``mask``, ``instances``, ``weight_map`` and ``regression`` moved
        together, then the image's intensities changed; its ``augment_seed`` entry used up."""
        if AUGMENT_SEED not in batch:
            raise ValueError(
                f"The batch augmentation needs each sample's '{AUGMENT_SEED}' (SegmentationDataset)."
            )
        image = batch["image"]
        seeds = [int(s) for s in batch[AUGMENT_SEED].tolist()]
        frame = Frame(len(seeds), image.shape[-2], image.shape[-1], image.device)
        out = {key: value for key, value in batch.items() if key != AUGMENT_SEED}
        with torch.autocast(device_type=image.device.type, enabled=False):  # coordinates need float32
            drawn = self.draw(seeds, frame)
            if any(isinstance(step, Geometric) for step in self.steps):
                points, jacobian = self.source_points(drawn, frame, bool(self.vector_pairs))
                out.update(self._warp(batch, points, jacobian))
            for step, params in zip(self.steps, drawn, strict=True):
                if isinstance(step, BrightnessContrast):
                    out["image"] = step.apply_to_image(params, out["image"])
        return out

    def _warp(
        self, batch: Mapping[str, torch.Tensor], points: torch.Tensor, jacobian: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Every per-pixel entry of the batch read at ``points``: the image bilinearly, the label maps
        and the weight map at the nearest pixel (as albumentations moves masks on the CPU path)."""
        pixels = nearest_pixels(points)
        out = {"image": sample_bilinear(batch["image"].float(), points)}
        for name in ("mask", "instances", "weight_map"):
            if name in batch:
                out[name] = sample_nearest(batch[name][:, None], pixels)[:, 0]
        if "regression" in batch:
            out["regression"] = self._regression(
                batch["regression"], out["instances"], points, pixels, jacobian
            )
        return out

    def _regression(
        self,
        maps: torch.Tensor,
        instances: torch.Tensor,
        points: torch.Tensor,
        pixels: torch.Tensor,
        jacobian: torch.Tensor | None,
    ) -> torch.Tensor:
        """Regression maps moved: scalars resampled bilinearly (0 off cells), vector fields read at the
        labels' pixels and turned by J^T at their own length; see the module docstring for what is exact."""
        cells = (instances > 0)[:, None].to(maps.dtype)
        moved = sample_bilinear(maps.float(), points).to(maps.dtype) * cells
        for y_index, x_index in self.vector_pairs:
            assert jacobian is not None
            vectors = sample_nearest(maps[:, [x_index, y_index]], pixels).permute(0, 2, 3, 1)[..., None]
            turned = (jacobian.transpose(-1, -2) @ vectors)[..., 0]  # (B, H, W, (x, y))
            length, new_length = vectors[..., 0].norm(dim=-1, keepdim=True), turned.norm(dim=-1, keepdim=True)
            turned = turned * (length / new_length.clamp_min(1e-12))
            moved[:, x_index], moved[:, y_index] = turned[..., 0] * cells[:, 0], turned[..., 1] * cells[:, 0]
        return moved
