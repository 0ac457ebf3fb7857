"""Prediction that streams: files read a region at a time, normalisation ranges from a sample, results
written block by block; the same results as predicting the image held whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellseg.data.io import read_planes
from cellseg.data.pipeline.normalize import Normalization
from cellseg.inference import Predictor, TileSettings, load_model, sources
from cellseg.inference.decode import class_map, encode_mask, foreground_probability
from cellseg.inference.inputs import InputPipeline, expand_inputs
from cellseg.inference.results import OutputOptions, predict_files
from cellseg.inference.sources import ArrayPlanes, TiffPlanes, ZarrPlanes, open_planes, source_images
from tests.inference_helpers import write_checkpoint

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((3, 40, 50), {"photometric": "minisblack"}),  # pages
        ((40, 50, 3), {"photometric": "rgb"}),  # interleaved samples (YXS)
        ((2, 3, 40, 50), {"imagej": True, "metadata": {"axes": "ZCYX"}}),  # an ImageJ hyperstack
        ((2, 40, 50), {"photometric": "minisblack", "byteorder": ">"}),  # big-endian
    ],
)
def test_uncompressed_tiffs_are_read_in_place_region_by_region(tmp_path, shape, kwargs):
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, RNG.integers(0, 4000, shape, dtype=np.uint16), **kwargs)
    planes = open_planes(path)
    whole = read_planes(path)
    assert isinstance(planes, TiffPlanes) and planes.shape == whole.shape
    for plane in range(whole.shape[0]):
        got = planes.read(plane, slice(5, 31), slice(7, 50))
        np.testing.assert_array_equal(got, whole[plane, 5:31, 7:50])
        assert got.dtype == whole.dtype and got.dtype.isnative


@pytest.mark.parametrize("tile", [None, (32, 32)])
def test_compressed_tiffs_are_read_chunk_by_chunk_through_zarr(tmp_path, tile):
    path = tmp_path / "image.tif"
    image = RNG.integers(0, 255, (2, 70, 90), dtype=np.uint8)
    tifffile.imwrite(path, image, photometric="minisblack", compression="zlib", tile=tile)
    planes = open_planes(path)
    assert isinstance(planes, ZarrPlanes)
    np.testing.assert_array_equal(planes.read(1, slice(10, 60), slice(5, 80)), image[1, 10:60, 5:80])


def test_without_zarr_compressed_tiffs_are_decoded_whole(tmp_path, monkeypatch):
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, RNG.integers(0, 255, (2, 30, 30), dtype=np.uint8), compression="zlib")
    monkeypatch.setattr(sources, "_zarr_available", lambda: False)
    assert isinstance(open_planes(path), ArrayPlanes)


def _write_ome_zarr(path: Path, array: np.ndarray, axes: str, version: str = "0.4") -> None:
    """An OME-Zarr image: NGFF 0.4 (zarr v2, ``multiscales`` in the attributes) or 0.5 (zarr v3, under ``ome``)."""
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    data = root.create_array(
        "0", shape=array.shape, chunks=(1,) * (array.ndim - 2) + (32, 32), dtype=array.dtype
    )
    data[...] = array
    kinds = {"t": "time", "c": "channel"}
    scale = {
        "version": version,
        "axes": [{"name": a, "type": kinds.get(a, "space")} for a in axes.lower()],
        "datasets": [{"path": "0"}],
    }
    root.attrs.update(
        {"multiscales": [scale]}
        if version == "0.4"
        else {"ome": {"version": version, "multiscales": [scale]}}
    )


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_images_are_read_with_channels_innermost(tmp_path, version):
    image = RNG.integers(0, 4000, (1, 2, 3, 40, 50), dtype=np.uint16)  # t, c, z, y, x
    _write_ome_zarr(tmp_path / "cells.ome.zarr", image, "TCZYX", version)
    planes = open_planes(tmp_path / "cells.ome.zarr")
    assert isinstance(planes, ZarrPlanes) and planes.shape == (6, 40, 50)
    for z in range(3):  # planes 2z, 2z + 1: the two channels of slice z
        for c in range(2):
            np.testing.assert_array_equal(planes.read(2 * z + c, slice(None), slice(None)), image[0, c, z])
    whole = read_planes(tmp_path / "cells.ome.zarr")
    np.testing.assert_array_equal(whole[3], image[0, 1, 1])


def test_an_ome_zarr_predicts_like_the_same_image_as_a_tiff(two_channel_checkpoint, tmp_path):
    images = RNG.integers(0, 4000, (2, 2, 80, 90), dtype=np.uint16)  # z, c, y, x
    _write_ome_zarr(tmp_path / "in" / "stack.ome.zarr", images.transpose(1, 0, 2, 3)[None], "TCZYX")
    tifffile.imwrite(tmp_path / "in" / "stack.tif", images.reshape(4, 80, 90), photometric="minisblack")
    predictor = Predictor(load_model(two_channel_checkpoint), tiles=TileSettings(size=48), device="cpu")
    options = OutputOptions.checked(["probability"], "tif", None, "all", predictor.class_names)
    files = expand_inputs(str(tmp_path / "in"))
    assert [p.name for p in files] == ["stack.ome.zarr", "stack.tif"]
    predict_files(predictor, [files[0]], tmp_path / "zarr", options, progress=False)
    predict_files(predictor, [files[1]], tmp_path / "tif", options, progress=False)
    from_zarr = tifffile.imread(tmp_path / "zarr" / "probabilities" / "stack.tif")
    np.testing.assert_array_equal(
        from_zarr, tifffile.imread(tmp_path / "tif" / "probabilities" / "stack.tif")
    )
    assert from_zarr.shape == (2, 2, 80, 90)


def _pipeline(method: str = "percentile", names: tuple[str, ...] = ("a", "b")) -> InputPipeline:
    return InputPipeline.from_pipeline(
        {"channel_names": list(names), "channels": list(names), "normalization": {"method": method}}
    )


@pytest.mark.parametrize("method", ["percentile", "minmax"])
def test_ranges_of_an_image_up_to_the_sample_size_are_exact(tmp_path, method):
    image = RNG.integers(0, 60000, (2, 70, 90), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "x.tif", image, photometric="minisblack")
    pipeline = _pipeline(method)
    (source,) = source_images(tmp_path / "x.tif", pipeline, "auto")
    source.measure(sample_pixels=70 * 90)
    got = source.region((slice(0, 70), slice(0, 90))).numpy()
    np.testing.assert_array_equal(got, pipeline(image))


def test_ranges_of_a_larger_image_come_from_a_regular_sample(tmp_path):
    image = RNG.normal(1000, 100, (1, 400, 400)).astype(np.float32)
    image[0, 0, 0] = 1e6  # a hot pixel the minmax range must still see
    tifffile.imwrite(tmp_path / "x.tif", image, photometric="minisblack")
    (percentile,) = source_images(tmp_path / "x.tif", _pipeline("percentile", ("a",)), "auto")
    percentile.measure(sample_pixels=100 * 100)  # every 4th row and column
    exact = Normalization().range_of(image[0])
    assert percentile.ranges[0] == pytest.approx(exact, rel=0.01)
    (minmax,) = source_images(tmp_path / "x.tif", _pipeline("minmax", ("a",)), "auto")
    assert minmax.measure(sample_pixels=100).ranges[0] == (float(image.min()), 1e6)


@pytest.fixture
def two_channel_checkpoint(tmp_path) -> Path:
    return write_checkpoint(tmp_path / "model.ckpt", channel_names=("a", "b"), specs=("a", "b"))


def _write_stack(path: Path, images: int, size: tuple[int, int], **kwargs) -> np.ndarray:
    stack = RNG.integers(0, 4000, (images * 2, *size), dtype=np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, stack, photometric="minisblack", **kwargs)
    return stack.reshape(images, 2, *size)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_streamed_results_equal_those_of_the_image_held_whole(two_channel_checkpoint, tmp_path, compression):
    images = _write_stack(tmp_path / "in" / "stack.tif", 2, (150, 170), compression=compression)
    tiles = TileSettings(size=64, overlap=0.25, batch_size=3)
    predictor = Predictor(load_model(two_channel_checkpoint), tiles=tiles, device="cpu")
    options = OutputOptions.checked(["mask", "probability"], "png", None, "all", predictor.class_names)
    out = tmp_path / "out"
    predict_files(predictor, [tmp_path / "in" / "stack.tif"], out, options, progress=False)
    masks, probabilities = (
        tifffile.imread(out / "masks" / "stack.tif"),
        tifffile.imread(out / "probabilities" / "stack.tif"),
    )
    assert masks.shape == (2, 150, 170) and probabilities.shape == (2, 2, 150, 170)
    for index, image in enumerate(images):
        whole = predictor.probabilities(image)
        np.testing.assert_array_equal(probabilities[index], whole)
        np.testing.assert_array_equal(masks[index], encode_mask(class_map(whole), options.mask_values))


def test_a_single_image_writes_a_png_mask_and_the_foreground_map(two_channel_checkpoint, tmp_path):
    (image,) = _write_stack(tmp_path / "one.tif", 1, (90, 100))
    predictor = Predictor(load_model(two_channel_checkpoint), tiles=TileSettings(size=48), device="cpu")
    options = OutputOptions.checked(["mask", "probability"], "png", None, "foreground", predictor.class_names)
    manifest = predict_files(predictor, [tmp_path / "one.tif"], tmp_path / "out", options, progress=False)
    assert manifest[0]["outputs"]["mask"].endswith("one.png")
    whole = predictor.probabilities(image)
    np.testing.assert_array_equal(
        read_planes(tmp_path / "out" / "masks" / "one.png")[0], encode_mask(class_map(whole), [0, 255])
    )
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "out" / "probabilities" / "one.tif"), foreground_probability(whole)
    )


def test_a_failure_midway_leaves_no_partial_result_files(two_channel_checkpoint, tmp_path, monkeypatch):
    _write_stack(tmp_path / "stack.tif", 3, (60, 60))
    predictor = Predictor(load_model(two_channel_checkpoint), tiles=TileSettings(size=32), device="cpu")
    calls = {"n": 0}
    original = predictor._predict_batch

    def failing(tiles):
        calls["n"] += 1
        if calls["n"] > 6:  # during the second image
            raise RuntimeError("out of memory")
        return original(tiles)

    monkeypatch.setattr(predictor, "_predict_batch", failing)
    options = OutputOptions.checked(["mask", "probability"], "tif", None, "foreground", predictor.class_names)
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_files(predictor, [tmp_path / "stack.tif"], tmp_path / "out", options, progress=False)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("value", [0, 100, 2.5, True, "all"])
def test_a_bad_normalization_pixels_names_the_key(value):
    from cellseg.errors import ConfigError
    from cellseg.inference.sources import check_sample_pixels

    with pytest.raises(ConfigError, match=r"normalization_pixels must be a whole number of pixels >= 1024"):
        check_sample_pixels(value)
