"""Downloads of public data sets into the cache, verified by the checksum of their decoded pixels."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from cellseg.data.io import read_planes
from cellseg.errors import DataError
from cellseg.utils.io import write_atomic


def pixel_sha256(path: Path) -> str:
    """sha256 of a file's decoded pixels: identical data in differently written TIFFs match."""
    return hashlib.sha256(read_planes(path).tobytes()).hexdigest()


def fetch(url: str, destination: Path, pixel_checksum: str | None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` (atomically) unless a verified copy is already there."""
    if destination.is_file() and (pixel_checksum is None or pixel_sha256(destination) == pixel_checksum):
        return destination
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DataError(
            f"Could not download {url} ({error}). Without network access, download the file on another "
            f"machine and put it at {destination} (or point data.root at its folder)."
        ) from error
    staging = destination.with_name(f".{destination.stem}.download{destination.suffix}")
    write_atomic(staging, lambda handle: handle.write(payload))
    try:
        actual = pixel_sha256(staging) if pixel_checksum else None
    except DataError:
        staging.unlink(missing_ok=True)
        raise
    if pixel_checksum and actual != pixel_checksum:
        staging.unlink(missing_ok=True)
        raise DataError(f"{url}: pixel checksum {actual} does not match the expected {pixel_checksum}.")
    staging.replace(destination)
    return destination


def fetch_all(urls: Mapping[str, str], checksums: Mapping[str, str], cache_dir: Path) -> Path:
    """Download every named file into ``cache_dir``; returns the folder."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, url in urls.items():
        fetch(url, cache_dir / name, checksums.get(name))
    return cache_dir
