"""Dense CRF refinement of class probabilities (``postprocess=crf`` of predict and evaluate).

Seed 002 refined its network's output with Krähenbühl and Koltun's fully connected CRF (pydensecrf):
unary -log p, a Gaussian kernel that makes nearby pixels agree and a bilateral one that makes nearby
pixels of similar intensity agree, a few steps of mean-field inference. Here the same model runs on K
classes and on images of any number of channels; the package (pydensecrf2, cellseg's optional ``crf``
extra, imported as ``pydensecrf``) is imported only when the CRF is asked for.

The bilateral kernel's reference is the model input (the checkpoint's channels, normalised): each
channel stretched so that its 1st..99th percentile spans 0..255, the 8-bit scale on which the seed set
``srgb``, whatever the checkpoint's normalisation. Every channel is one feature of the kernel
(pydensecrf's n-channel form, not its RGB-only ``addPairwiseBilateral``): a gray image is one feature,
not three copies of it (which would shrink ``srgb`` by sqrt 3), and for three channels the kernel is
exactly ``addPairwiseBilateral``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from types import ModuleType
from typing import Any

import numpy as np

from cellseg.data.pipeline.normalize import Normalization
from cellseg.errors import ConfigError

#: The values of ``postprocess``.
POSTPROCESS = ("none", "crf")
#: Where the CRF package comes from, for the error that asks for it.
CRF_INSTALL = (
    "pip install \"cellseg[crf]\" (in a clone: pip install -c constraints.txt -e '.[crf]'); "
    "it builds pydensecrf2 from source, so a C++ compiler is needed"
)
#: Probabilities are clipped here before -log: a network's 0 is not a certainty the CRF cannot overrule.
MIN_PROBABILITY = 1e-5
#: Percentiles of each reference channel mapped to 0 and 255.
REFERENCE_PERCENTILES = (1.0, 99.0)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class CrfSettings:
    """The ``crf.*`` keys; the defaults are seed 002's (``inference(5)``, ``addPairwiseGaussian(sxy=20,
    compat=3)``, ``addPairwiseBilateral(sxy=30, srgb=20, compat=10)``)."""

    iterations: int = 5  # mean-field steps
    gaussian_sxy: float = 20.0  # px: reach of the smoothness kernel
    gaussian_compat: float = 3.0  # its weight (Potts); 0 switches it off
    bilateral_sxy: float = 30.0  # px: reach of the appearance kernel
    bilateral_srgb: float = 20.0  # intensity difference (0..255 per channel) it tolerates
    bilateral_compat: float = 10.0  # its weight (Potts); 0 switches it off

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"crf.iterations is {self.iterations!r}; expected a whole number >= 1.")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            value = getattr(self, name)
            if not _number(value) or not value > 0:
                raise ConfigError(f"crf.{name} is {value!r}; expected a number > 0.")
        for name in ("gaussian_compat", "bilateral_compat"):
            value = getattr(self, name)
            if not _number(value) or not value >= 0:
                raise ConfigError(
                    f"crf.{name} is {value!r}; expected a number >= 0 (0 switches the kernel off)."
                )

    @classmethod
    def of(cls, given: Mapping[str, Any] | None) -> CrfSettings:
        """The settings of a ``crf`` mapping; an unknown key is an error that lists the known ones."""
        given = dict(given or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ConfigError(f"crf has no key {', '.join(unknown)}; its keys are {', '.join(known)}.")
        return cls(**given)


def require_crf() -> ModuleType:
    """pydensecrf's ``densecrf`` module, or a ConfigError that says how to install it."""
    try:
        import pydensecrf.densecrf as densecrf
    except ImportError as error:
        raise ConfigError(
            "postprocess=crf needs the dense CRF package pydensecrf2, cellseg's optional 'crf' extra: "
            f"{CRF_INSTALL}."
        ) from error
    return densecrf


def postprocess_settings(name: Any, crf: Mapping[str, Any] | None = None) -> CrfSettings | None:
    """``postprocess`` and ``crf.*`` checked before any work: the CRF's settings, or None for
    ``postprocess=none``. ``crf.*`` is checked either way; the package only when the CRF is asked for."""
    settings = CrfSettings.of(crf)
    if name not in POSTPROCESS:
        raise ConfigError(f"postprocess is {name!r}; expected one of {', '.join(POSTPROCESS)}.")
    if name == "none":
        return None
    require_crf()
    return settings


def postprocess_request(job: Any, tune: bool = False) -> CrfSettings | None:
    """The ``postprocess`` and ``crf.*`` keys of predict's or evaluate's config, checked
    (:func:`postprocess_settings`).

    ``tune=true`` (evaluate) with the CRF is refused: the thresholds it finds are stored in the
    checkpoint and serve every later predict and evaluate, with or without the CRF."""
    from omegaconf import OmegaConf

    crf = job.get("crf")
    crf = OmegaConf.to_container(crf, resolve=True) if OmegaConf.is_config(crf) else crf
    settings = postprocess_settings(job.get("postprocess", "none"), crf)
    if settings is not None and tune:
        raise ConfigError(
            "tune=true with postprocess=crf: the tuned decoding thresholds are stored in the checkpoint and "
            "used by every later predict and evaluate, with or without the CRF; tune with postprocess=none, "
            "then evaluate with postprocess=crf."
        )
    return settings


def describe_postprocess(settings: CrfSettings | None) -> dict[str, Any]:
    """What a manifest records of the post-processing used."""
    return {"postprocess": "none"} if settings is None else {"postprocess": "crf", "crf": asdict(settings)}


def crf_reference(model_input: np.ndarray) -> np.ndarray:
    """The bilateral kernel's reference (C, H, W) float32 on 0..255 of a model input (C, H, W): each
    channel's 1st..99th percentile stretched to 0..255 and clipped (a constant channel is 0)."""
    stretch = Normalization(method="percentile", low=REFERENCE_PERCENTILES[0], high=REFERENCE_PERCENTILES[1])
    return np.stack([stretch(plane) * np.float32(255.0) for plane in model_input]).astype(np.float32)


def bilateral_features(reference: np.ndarray, sxy: float, srgb: float) -> np.ndarray:
    """(2 + C, H * W) float32 features (x / sxy, y / sxy, channel / srgb): those of pydensecrf's
    ``addPairwiseBilateral`` for any number of channels."""
    channels, height, width = reference.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    features = np.concatenate([xs[None] / sxy, ys[None] / sxy, reference.astype(np.float32) / srgb])
    return np.ascontiguousarray(features.reshape(2 + channels, height * width), dtype=np.float32)


def dense_crf(
    probabilities: np.ndarray, reference: np.ndarray, settings: CrfSettings | None = None
) -> np.ndarray:
    """Class probabilities (K, H, W) refined by a dense CRF on the reference image (C, H, W) on 0..255
    (:func:`crf_reference`): the CRF's mean-field marginals (K, H, W) float32, which sum to 1 per pixel;
    their argmax is the refined class map."""
    settings = settings or CrfSettings()
    densecrf = require_crf()
    classes, height, width = probabilities.shape
    if classes < 2:
        raise ValueError(f"a CRF needs the probabilities of 2 or more classes, got {classes}.")
    if reference.ndim != 3 or reference.shape[1:] != (height, width):
        raise ValueError(
            f"the CRF's reference image {reference.shape} does not match the probabilities "
            f"{probabilities.shape}."
        )
    crf = densecrf.DenseCRF2D(width, height, classes)
    unary = -np.log(np.clip(probabilities.reshape(classes, -1), MIN_PROBABILITY, 1.0))
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    if settings.gaussian_compat > 0:
        crf.addPairwiseGaussian(sxy=settings.gaussian_sxy, compat=float(settings.gaussian_compat))
    if settings.bilateral_compat > 0:
        features = bilateral_features(reference, settings.bilateral_sxy, settings.bilateral_srgb)
        crf.addPairwiseEnergy(features, compat=float(settings.bilateral_compat))
    marginals = np.asarray(crf.inference(settings.iterations), dtype=np.float32)
    return marginals.reshape(classes, height, width)
