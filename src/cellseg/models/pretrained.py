"""Opt-in pretrained encoder weights, read from the local cache only.

Runs never download: ``model.encoder_weights=imagenet`` looks the weights up in the Hugging Face cache
(``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), where segmentation-models-pytorch and timm
keep them, and fails with the command that fetches them when they are not there. A training job on a
cluster node without internet then stops at once with instructions instead of hanging on a timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cellseg.errors import ConfigError

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Make huggingface_hub read its cache without any network request while the block runs."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _cached(repo_id: str, filename: str, revision: str | None = None) -> bool:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        hf_hub_download(repo_id, filename, revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return False
    return True


def _fetch_hint(repo_id: str, revision: str | None, files: tuple[str, ...]) -> str:
    from huggingface_hub import constants

    rev = f" --revision {revision}" if revision else ""
    return (
        f"Fetch them on a machine with internet with `hf download {repo_id} {' '.join(files)}{rev}` "
        f"(huggingface_hub's CLI; `huggingface-cli download` in older versions) and copy the cache folder "
        f"'{constants.HF_HUB_CACHE}' here, or point HF_HUB_CACHE (or HF_HOME) at a copy of it. "
        f"Or train from random init with model.encoder_weights=null."
    )


def _require_smp_weights(encoder: str, weights: str) -> None:
    from segmentation_models_pytorch.encoders import encoders

    if encoder not in encoders:
        raise ConfigError(
            f"Unknown model.encoder '{encoder}'. See segmentation-models-pytorch's encoder list."
        )
    available = encoders[encoder]["pretrained_settings"]
    if weights not in available:
        raise ConfigError(
            f"model.encoder_weights='{weights}' does not exist for encoder '{encoder}'. "
            f"Available: {', '.join(sorted(available)) or 'none'} (or null for random init)."
        )
    repo_id, revision = available[weights]["repo_id"], available[weights]["revision"]
    files = ("config.json", "model.safetensors")
    if not all(_cached(repo_id, f, revision) for f in files):
        raise ConfigError(
            f"Pretrained weights model.encoder_weights='{weights}' for encoder '{encoder}' are not in the "
            f"local cache (nothing is downloaded during a run). {_fetch_hint(repo_id, revision, files)}"
        )


def _require_timm_weights(model_name: str) -> None:
    import timm
    import torch

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ConfigError(
            f"timm model '{model_name}' (model.encoder='tu-{model_name}') has no pretrained weights."
        )
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        if any(_cached(repo_id, f, revision or None) for f in _WEIGHT_FILES):
            return
        raise ConfigError(
            f"Pretrained weights for model.encoder='tu-{model_name}' are not in the local cache (nothing is "
            f"downloaded during a run). {_fetch_hint(repo_id, revision or None, ('model.safetensors',))}"
        )
    if cfg.url:
        from pathlib import Path
        from urllib.parse import urlparse

        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if not target.is_file():
            raise ConfigError(
                f"Pretrained weights for model.encoder='tu-{model_name}' are not in the local cache "
                f"'{target}' (nothing is downloaded during a run). Fetch them on a machine with internet "
                f"(`curl -L -o {target.name} {cfg.url}`) into that folder (TORCH_HOME moves it), or train "
                f"from random init with model.encoder_weights=null."
            )


def resolve_encoder_weights(encoder: str, weights: str | None) -> str | bool | None:
    """Check that ``weights`` for ``encoder`` are cached; returns the value smp expects for them.

    ``tu-<timm name>`` encoders take ``True`` (the pretrained tag is part of the timm name); smp's own
    encoders take the weights' name, e.g. ``imagenet``.
    """
    if weights is None or weights is False:
        return None
    if encoder.startswith("tu-"):
        _require_timm_weights(encoder[3:])
        return True
    _require_smp_weights(encoder, str(weights))
    return str(weights)
