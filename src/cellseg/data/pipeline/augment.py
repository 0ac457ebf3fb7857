"""Augmentation pipelines beyond the plain YAML lists: seed 004's elastic presets and fastai's defaults.

Every pipeline is an albumentations ``Compose``; geometric transforms move the image and all label maps
(classes, instance ids, ignore regions) together, with nearest-neighbour sampling for the labels.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from cellseg.errors import ConfigError

# Seed 004 (ISBI 2012): (alpha, sigma, alpha_affine) = [[2, .08, .08], [2, .05, .05], [3, .07, .09],
# [3, .12, .07]] x 512 px, i.e. for 512 x 512 slices:
ELASTIC_PRESETS: tuple[tuple[float, float, float], ...] = (
    (1024.0, 40.96, 40.96),
    (1024.0, 25.6, 25.6),
    (1536.0, 35.84, 46.08),
    (1536.0, 61.44, 35.84),
)


class CornerJitterAffine(A.DualTransform):
    """Seed 004's random affine: three points of a centred square move by U(-alpha_affine, alpha_affine) px.

    The source points are the centre +- a third of the shorter side, as in the erniejunior elastic
    gist the seed used; borders are mirrored (cv2.BORDER_REFLECT_101).
    """

    def __init__(self, alpha_affine: float = 40.96, p: float = 0.5) -> None:
        super().__init__(p=p)
        if alpha_affine < 0:
            raise ConfigError(f"alpha_affine must be >= 0 pixels, got {alpha_affine}.")
        self.alpha_affine = alpha_affine

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        centre = np.float32([height, width]) / 2
        half = min(height, width) // 3
        source = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
        jitter = self.random_generator.uniform(-self.alpha_affine, self.alpha_affine, size=source.shape)
        matrix = cv2.getAffineTransform(source[:, ::-1], (source + jitter.astype(np.float32))[:, ::-1])
        return {"matrix": matrix}

    def _warp(self, array: np.ndarray, matrix: np.ndarray, interpolation: int) -> np.ndarray:
        height, width = array.shape[:2]
        out = cv2.warpAffine(
            array, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_REFLECT_101
        )
        return out.reshape(array.shape) if out.ndim < array.ndim else out

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return self._warp(img, matrix, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return self._warp(mask, matrix, cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("alpha_affine",)


def elastic(
    preset: int | None = 0,
    alpha: float | None = None,
    sigma: float | None = None,
    alpha_affine: float | None = None,
    p: float = 0.5,
    flips: bool = True,
) -> A.Compose:
    """Flips and rot90, then seed 004's random affine and Simard's elastic deformation.

    ``preset`` picks one of seed 004's four (alpha, sigma, alpha_affine) sets; ``alpha``, ``sigma`` or
    ``alpha_affine`` given explicitly override it. The displacement field is uniform noise in [-1, 1]
    smoothed by a Gaussian of ``sigma`` px and scaled by ``alpha`` px, as in Simard et al. (2003).
    """
    if preset is not None and not 0 <= preset < len(ELASTIC_PRESETS):
        raise ConfigError(
            f"augmentation.preset must be 0..{len(ELASTIC_PRESETS) - 1} (seed 004's sets) or null, got {preset}."
        )
    base = ELASTIC_PRESETS[preset] if preset is not None else (None, None, None)
    alpha, sigma, alpha_affine = (
        v if v is not None else b for v, b in zip((alpha, sigma, alpha_affine), base, strict=True)
    )
    if alpha is None or sigma is None or alpha_affine is None:
        raise ConfigError("augmentation=elastic without a preset needs alpha, sigma and alpha_affine.")
    flip_steps = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)] if flips else []
    return A.Compose(
        [
            *flip_steps,
            CornerJitterAffine(alpha_affine=alpha_affine, p=p),
            A.ElasticTransform(
                alpha=alpha,
                sigma=sigma,
                noise_distribution="uniform",
                border_mode=cv2.BORDER_REFLECT_101,
                p=p,
            ),
        ]
    )


def fastai(
    max_rotate: float = 10.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
) -> A.Compose:
    """fastai v1 ``get_transforms()`` defaults (seed 001) in albumentations terms.

    Horizontal flip (p 0.5; fastai flips no vertical axis), rotation within +-max_rotate degrees and
    zoom 1..max_zoom (p_affine), a perspective warp for fastai's symmetric warp of magnitude max_warp
    (corner jitter up to max_warp / 2 of the half-size), and brightness/contrast within +-max_lighting
    (p_lighting). Borders are replicated, as fastai's padding_mode='border'.
    """
    border = cv2.BORDER_REPLICATE
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-max_rotate, max_rotate), scale=(1.0, max_zoom), border_mode=border, p=p_affine),
            A.Perspective(scale=(0.0, max_warp / 4), border_mode=border, p=p_affine),
            A.RandomBrightnessContrast(
                brightness_limit=max_lighting, contrast_limit=max_lighting, p=p_lighting
            ),
        ]
    )
