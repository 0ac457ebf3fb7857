"""Per-cell measurements, summaries, their CSVs and outline overlays, against hand-computed values."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from cellseg.inference.writers import write_png
from cellseg.instances.measure import (
    image_names,
    measure_cells,
    measurement_columns,
    summarise,
    write_measurements,
    write_summary,
)
from cellseg.instances.overlay import PALETTE, neighbour_pairs, outline_colours, outline_overlay, stretch


def two_cells() -> np.ndarray:
    """A 10 x 10 square (id 3) and a 4 x 5 rectangle (id 7) in a 40 x 40 image."""
    labels = np.zeros((40, 40), np.uint16)
    labels[5:15, 5:15] = 3
    labels[20:24, 20:25] = 7
    return labels


def two_channel_image(labels: np.ndarray) -> np.ndarray:
    """Channel 'dapi' constant 1000 in cell 3, ramp 1..20 in cell 7; 'gfp' 7 in cell 3, 0/40 in cell 7."""
    image = np.full((2, *labels.shape), 5, np.uint16)
    image[0][labels == 3] = 1000
    image[0][labels == 7] = np.arange(1, 21)
    image[1][labels == 3] = 7
    image[1][20:22, 20:25] = 40  # top half of cell 7 at 40, bottom half at 0
    image[1][22:24, 20:25] = 0
    return image


def read_csv(path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


# ---------------------------------------------------------------- measurements


def test_geometry_against_hand_computed_values():
    table = measure_cells(two_cells(), np.zeros((40, 40), np.uint8), ["raw"], pixel_size=0.5)
    assert table["label"].tolist() == [3, 7]  # label order, ids kept
    assert table["area_px"].tolist() == [100, 20]
    np.testing.assert_allclose(table["area_um2"], [25.0, 5.0])
    np.testing.assert_allclose(table["centroid_y"], [9.5, 21.5])
    np.testing.assert_allclose(table["centroid_x"], [9.5, 22.0])
    np.testing.assert_allclose(table["equivalent_diameter_px"], np.sqrt(4 * np.array([100, 20]) / np.pi))
    np.testing.assert_allclose(
        table["equivalent_diameter_um"], 0.5 * np.sqrt(4 * np.array([100, 20]) / np.pi)
    )
    # Contour through the boundary pixels' centres: 4 (10 - 1) and 2 (3 + 4).
    np.testing.assert_allclose(table["perimeter_px"], [36.0, 14.0])
    np.testing.assert_allclose(table["perimeter_um"], [18.0, 7.0])
    # Square: equal second moments; 4 x 5 rectangle: variances (4^2-1)/12 and (5^2-1)/12.
    np.testing.assert_allclose(table["eccentricity"], [0.0, math.sqrt(1 - 1.25 / 2.0)], atol=1e-9)
    np.testing.assert_allclose(table["solidity"], [1.0, 1.0])


def test_columns_without_and_with_pixel_size():
    labels, image = two_cells(), np.zeros((2, 40, 40), np.float32)
    plain = measure_cells(labels, image, ["dapi", "gfp"])
    assert list(plain) == [
        "label",
        "area_px",
        "perimeter_px",
        "centroid_y",
        "centroid_x",
        "equivalent_diameter_px",
        "eccentricity",
        "solidity",
        "mean_dapi",
        "max_dapi",
        "mean_gfp",
        "max_gfp",
    ]
    assert list(plain) == measurement_columns(["dapi", "gfp"])
    scaled = measure_cells(labels, image, ["dapi", "gfp"], pixel_size=0.25)
    assert list(scaled) == measurement_columns(["dapi", "gfp"], 0.25)
    assert {"area_um2", "perimeter_um", "equivalent_diameter_um"} <= set(scaled)
    assert not any(c.endswith(("_um", "_um2")) for c in plain)
    assert all(len(v) == 2 for v in scaled.values())


def test_intensities_per_channel_in_source_values():
    labels = two_cells()
    table = measure_cells(labels, two_channel_image(labels), ["dapi", "gfp"])
    np.testing.assert_array_equal(table["mean_dapi"], [1000.0, 10.5])  # mean of 1..20
    np.testing.assert_array_equal(table["max_dapi"], [1000, 20])
    np.testing.assert_array_equal(table["mean_gfp"], [7.0, 20.0])
    np.testing.assert_array_equal(table["max_gfp"], [7, 40])
    assert table["max_dapi"].dtype == np.uint16  # the source's dtype, not normalised


def test_two_dimensional_image_is_one_channel_and_float_values_are_kept():
    labels = two_cells()
    image = np.where(labels == 3, 0.25, 0.0).astype(np.float32)
    table = measure_cells(labels, image, ["phase"])
    np.testing.assert_allclose(table["mean_phase"], [0.25, 0.0])
    np.testing.assert_allclose(table["max_phase"], [0.25, 0.0])


def test_non_consecutive_labels_in_increasing_order():
    labels = np.zeros((20, 20), np.int32)
    labels[0:2, 0:2] = 12  # first in raster order, but the highest id
    labels[10:13, 10:13] = 4
    table = measure_cells(labels, np.zeros((20, 20)), ["c"])
    assert table["label"].tolist() == [4, 12]
    assert table["area_px"].tolist() == [9, 4]


def test_empty_labels_give_all_columns_with_zero_rows():
    table = measure_cells(np.zeros((16, 16), np.uint16), np.ones((2, 16, 16)), ["a", "b"], pixel_size=1.0)
    assert list(table) == measurement_columns(["a", "b"], 1.0)
    assert all(len(v) == 0 for v in table.values())
    row = summarise("empty", table, pixel_size=1.0)
    assert row["cell_count"] == 0
    assert math.isnan(row["mean_area_px"]) and math.isnan(row["median_area_um2"])


@pytest.mark.parametrize(
    ("labels", "image", "names", "pixel_size", "message"),
    [
        (np.zeros((40, 40), np.int32), np.zeros((1, 30, 40)), ["a"], None, "labels are 40 x 40"),
        (np.zeros((40, 40), np.int32), np.zeros((40, 40, 2)), ["a", "b"], None, "channels-last"),
        (np.zeros((40, 40), np.int32), np.zeros((2, 40, 40)), ["a"], None, "1 channel name(s)"),
        (np.zeros((40, 40), np.int32), np.zeros((2, 40, 40)), ["a", "a"], None, "distinct"),
        (np.zeros((40, 40), np.int32), np.zeros((40, 40)), ["a"], 0, "pixel_size is 0"),
        (np.zeros((40, 40), np.int32), np.zeros((40, 40)), ["a"], -0.3, "positive number"),
        (np.zeros((40, 40), bool), np.zeros((40, 40)), ["a"], None, "integer cell ids"),
        (np.zeros((2, 40, 40), np.int32), np.zeros((40, 40)), ["a"], None, "2-D (H, W)"),
        (np.full((4, 4), -1, np.int32), np.zeros((4, 4)), ["a"], None, "negative"),
    ],
)
def test_bad_input_names_the_problem(labels, image, names, pixel_size, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        measure_cells(labels, image, names, pixel_size)


# ---------------------------------------------------------------- summaries and CSVs


def test_summary_of_a_known_table():
    table = {"label": np.array([1, 2, 5]), "area_px": np.array([10, 20, 60])}
    row = summarise("img", table, pixel_size=0.5)
    assert row == {
        "image": "img",
        "cell_count": 3,
        "mean_area_px": 30.0,
        "median_area_px": 20.0,
        "mean_area_um2": 7.5,
        "median_area_um2": 5.0,
    }
    assert "mean_area_um2" not in summarise("img", table, pixel_size=None)


def test_measurements_csv_round_trips(tmp_path):
    labels = two_cells()
    image = two_channel_image(labels)
    first = measure_cells(labels, image, ["dapi", "gfp"], pixel_size=0.3)
    second = measure_cells(labels[::-1].copy(), image[:, ::-1], ["dapi", "gfp"], pixel_size=0.3)
    path = write_measurements(
        tmp_path / "measurements" / "stack.csv", [("stack_p01", first), ("stack_p02", second)]
    )
    header, rows = read_csv(path)
    assert header == ["image", *measurement_columns(["dapi", "gfp"], 0.3)]
    assert [r["image"] for r in rows] == ["stack_p01"] * 2 + ["stack_p02"] * 2
    assert [r["label"] for r in rows] == ["3", "7", "3", "7"]
    assert rows[0]["area_px"] == "100" and rows[1]["max_dapi"] == "20"
    assert float(rows[0]["area_um2"]) == pytest.approx(9.0)
    assert float(rows[1]["eccentricity"]) == pytest.approx(math.sqrt(0.375), abs=1e-4)
    assert rows[1]["eccentricity"] == "0.6124"  # rounded to 4 decimals: files diff cleanly
    assert float(rows[2]["centroid_y"]) == pytest.approx(39 - 9.5)
    assert not list(tmp_path.glob("measurements/.*"))  # no temporary file left behind


def test_csv_of_zero_cells_has_the_header(tmp_path):
    table = measure_cells(np.zeros((8, 8), np.uint8), np.zeros((8, 8)), ["raw"])
    header, rows = read_csv(write_measurements(tmp_path / "empty.csv", [("empty", table)]))
    assert header == ["image", *measurement_columns(["raw"])]
    assert rows == []


def test_summary_csv_reads_back_with_empty_cells_for_zero_cells(tmp_path):
    rows = [
        summarise("a", {"area_px": np.array([4, 6])}, 2.0),
        summarise("b", {"area_px": np.array([], np.int64)}, 2.0),
    ]
    header, back = read_csv(write_summary(tmp_path / "summary.csv", rows))
    assert header == [
        "image",
        "cell_count",
        "mean_area_px",
        "median_area_px",
        "mean_area_um2",
        "median_area_um2",
    ]
    assert back[0] == {
        "image": "a",
        "cell_count": "2",
        "mean_area_px": "5.0",
        "median_area_px": "5.0",
        "mean_area_um2": "20.0",
        "median_area_um2": "20.0",
    }
    assert back[1]["cell_count"] == "0" and back[1]["mean_area_px"] == "" and back[1]["median_area_um2"] == ""


def test_small_float_intensities_keep_significant_digits(tmp_path):
    labels = np.zeros((4, 4), np.int32)
    labels[1:3, 1:3] = 1
    image = np.where(labels > 0, 1.234567e-5, 0.0)
    table = measure_cells(labels, image, ["weak"])
    _, rows = read_csv(write_measurements(tmp_path / "weak.csv", [("weak", table)]))
    assert float(rows[0]["mean_weak"]) == pytest.approx(1.235e-5, rel=1e-6)


def test_image_names():
    assert image_names("cells", 1) == ["cells"]
    assert image_names("stack", 3) == ["stack_p01", "stack_p02", "stack_p03"]
    assert image_names("stack", 120)[-1] == "stack_p120"


# ---------------------------------------------------------------- overlays


def touching_cells() -> tuple[np.ndarray, np.ndarray]:
    """Cells 1 and 2 touch along a column; cell 3 stands apart; a textured image."""
    labels = np.zeros((48, 48), np.int32)
    labels[8:20, 8:20] = 1
    labels[8:20, 20:32] = 2
    labels[30:40, 30:40] = 3
    rng = np.random.default_rng(0)
    image = rng.integers(100, 4000, size=(2, 48, 48)).astype(np.uint16)
    return labels, image


def is_grey(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])


def test_overlay_outlines_coloured_and_background_grey():
    labels, image = touching_cells()
    rgb = outline_overlay(image, labels)
    assert rgb.shape == (48, 48, 3) and rgb.dtype == np.uint8
    assert rgb.max() > 0 and rgb.std() > 10  # not blank
    # Outlines (inner boundary pixels) of each cell: corners, the shared contact column on both sides.
    for y, x in [(8, 8), (19, 19), (8, 20), (19, 31), (30, 30), (39, 35)]:
        assert not is_grey(rgb[y, x]), (y, x, rgb[y, x])
        assert tuple(rgb[y, x]) in PALETTE
    # The two touching cells' outlines differ in colour where they meet.
    assert tuple(rgb[14, 19]) != tuple(rgb[14, 20])
    # Away from any outline (cell interiors and background) the image is grey.
    assert is_grey(rgb[12:16, 12:16]).all() and is_grey(rgb[0:5, 0:48]).all() and is_grey(rgb[44:, :]).all()
    # The image shows through: the interior is not uniform.
    assert len(np.unique(rgb[10:18, 10:18, 0])) > 5


def test_overlay_neighbours_differ_even_when_ids_would_collide():
    # Ids 1 and 11 share colour label % 10, but as neighbours (1 px gap) they must differ.
    labels = np.zeros((20, 30), np.int32)
    labels[5:15, 2:10] = 1
    labels[5:15, 11:19] = 11
    labels[5:15, 25:29] = 21  # far away: may reuse a colour
    assert neighbour_pairs(labels).tolist() == [[1, 11]]
    colours = outline_colours(labels)
    assert colours[1] != colours[11]
    rgb = outline_overlay(np.zeros((20, 30)), labels)
    assert tuple(rgb[10, 9]) != tuple(rgb[10, 11])


def test_overlay_of_constant_image_and_of_no_cells():
    labels, _ = touching_cells()
    with np.errstate(all="raise"):
        rgb = outline_overlay(np.full((48, 48), 7, np.uint8), labels)
    assert is_grey(rgb[0:5]).all() and (rgb[0:5] == 0).all()
    assert not is_grey(rgb[8, 8])
    blank = outline_overlay(
        np.arange(48 * 48, dtype=np.float32).reshape(48, 48), np.zeros((48, 48), np.int32)
    )
    assert is_grey(blank).all() and blank.max() == 255 and blank.min() == 0


def test_stretch_percentiles_and_nan():
    plane = np.arange(1000, dtype=np.float64).reshape(10, 100)
    plane[0, 0] = np.nan
    out = stretch(plane)
    assert out.dtype == np.float32 and out[0, 0] == 0.0
    assert out.min() == 0.0 and out.max() == 1.0
    assert 0 < (out == 1.0).sum() <= 3  # only the top 0.2 % saturates
    sparse = np.zeros((50, 50))
    sparse[3, 3] = 9.0  # percentiles coincide: min-max keeps the spot visible
    assert stretch(sparse)[3, 3] == 1.0


def test_overlay_channel_choice_and_shape_errors():
    labels, image = touching_cells()
    image[1] = 0
    only_second = outline_overlay(image, labels, channel=1)
    assert (only_second[0:5, 0:5] == 0).all()
    with pytest.raises(ValueError, match="2 channel"):
        outline_overlay(image, labels, channel=2)
    with pytest.raises(ValueError, match="labels are 40 x 40"):
        outline_overlay(image, np.zeros((40, 40), np.int32))
    with pytest.raises(ValueError, match="2-D"):
        outline_overlay(image, np.zeros((1, 48, 48), np.int32))


def test_overlay_writes_as_rgb_png(tmp_path):
    from PIL import Image

    labels, image = touching_cells()
    rgb = outline_overlay(image, labels)
    path = write_png(tmp_path / "overlays" / "cells.png", rgb)
    with Image.open(path) as png:
        assert png.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(png), rgb)
