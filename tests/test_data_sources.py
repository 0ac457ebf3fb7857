"""Every data layout on small fixtures written by the tests, and every bad-input case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellseg.data import BinaryTarget, ChannelStrategy, FromChannelTarget
from cellseg.data.downloads import fetch
from cellseg.data.sources.folder import FolderDataModule
from cellseg.data.sources.hyperlabeled import HyperlabeledDataModule
from cellseg.data.sources.isbi import IsbiDataModule, slice_split
from cellseg.data.sources.lgg import LggDataModule
from cellseg.errors import ConfigError, DataError
from tests.fixtures import RNG, cells_mask, write_isbi, write_png


def common(specs=("0",), target=None) -> dict:
    return {"channels": ChannelStrategy(list(specs)), "target": target or BinaryTarget(), "batch_size": 2}


# ---------------------------------------------------------------- ISBI


def test_isbi_default_split_is_0_24_train_25_29_val(tmp_path):
    dm = IsbiDataModule(root=str(write_isbi(tmp_path)), **common(["em"]))
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(train) == 25 and len(val) == 5
    assert list(val.samples.names) == [f"train-volume.tif[{i}]" for i in range(25, 30)]
    assert train.instances[0].max() == 2  # two 4-connected cells from the 255 regions
    assert not dm.has_split("test")


def test_isbi_per_slice_folders_fold_and_explicit_lists(tmp_path):
    for i in range(6):
        write_png(tmp_path / "imgs" / f"s{i:02d}.png", RNG.integers(0, 255, (32, 32), dtype=np.uint8))
        write_png(tmp_path / "labs" / f"s{i:02d}.png", cells_mask())
    dm = IsbiDataModule(
        root=str(tmp_path), volume="imgs", labels="labs", fold=1, num_folds=3, **common(["em"])
    )
    assert list(dm.dataset("val").samples.names) == ["s02.png", "s03.png"]
    assert slice_split(30) == (list(range(25)), list(range(25, 30)))
    assert slice_split(10, val_slices=[0, 9]) == (list(range(1, 9)), [0, 9])
    with pytest.raises(ConfigError, match=r"Slices \[3\] are in both"):
        slice_split(10, train_slices=[1, 3], val_slices=[3])
    with pytest.raises(ConfigError, match="out of range"):
        slice_split(10, val_slices=[12])


def test_isbi_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(
        DataError, match=r"ISBI 2012 data not found '.*': expected train-volume\.tif.*data\.download=true"
    ):
        IsbiDataModule(root=str(tmp_path), **common(["em"]))


def test_download_verifies_pixel_checksum_and_fails_clearly_offline(tmp_path):
    source = tmp_path / "mirror" / "v.tif"
    source.parent.mkdir()
    tifffile.imwrite(source, np.arange(64, dtype=np.uint8).reshape(1, 8, 8))
    from cellseg.data.downloads import pixel_sha256

    good = pixel_sha256(source)
    cached = fetch(source.as_uri(), tmp_path / "cache" / "v.tif", good)
    assert cached.is_file()
    with pytest.raises(DataError, match="does not match"):
        fetch(source.as_uri(), tmp_path / "cache2" / "v.tif", "0" * 64)
    assert not (tmp_path / "cache2" / "v.tif").exists()
    with pytest.raises(DataError, match=r"Could not download .*put it at"):
        fetch("http://127.0.0.1:9/v.tif", tmp_path / "cache3" / "v.tif", good, timeout=5)


# ---------------------------------------------------------------- folders


def test_folder_pairs_16_bit_multichannel_tiffs_with_png_masks(tmp_path):
    for i in range(5):
        tifffile.imwrite(
            tmp_path / "images" / f"img{i}.tif"
            if (tmp_path / "images").exists()
            else _mk(tmp_path / "images") / f"img{i}.tif",
            RNG.integers(0, 4096, (2, 32, 32), dtype=np.uint16),
        )
        write_png(tmp_path / "masks" / f"img{i}.png", cells_mask())
    dm = FolderDataModule(root=str(tmp_path), val_fraction=0.4, **common(["ch1", 0]))
    assert dm.channel_names == ("ch0", "ch1")
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(train) == 3 and len(val) == 2
    assert train.samples.images[0].dtype == np.uint16  # kept in its native dtype
    assert train[0]["image"].shape == (2, 32, 32)


def _mk(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def test_group_pattern_keeps_a_patient_on_one_side(tmp_path):
    for patient in range(4):
        for sl in range(3):
            name = f"patient{patient}_slice{sl}.png"
            write_png(tmp_path / "images" / name, RNG.integers(0, 255, (16, 16), dtype=np.uint8))
            write_png(tmp_path / "masks" / name, cells_mask(16))
    dm = FolderDataModule(root=str(tmp_path), group_pattern=r"^(patient\d+)_", val_fraction=0.25, **common())
    groups = {split: {p.group for p in pairs} for split, pairs in dm.splits().items()}
    assert len(groups["val"]) == 1 and not groups["val"] & groups["train"]
    assert len(dm.splits()["val"]) == 3


def test_seed_002_text_lists(tmp_path):
    for split in ("data", "val"):
        for i in range(2):
            write_png(tmp_path / split / f"im{i}.png", RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8))
            write_png(tmp_path / split / f"im{i}_mask.png", cells_mask(16))
        (tmp_path / split / "images.txt").write_text("im1.png\nim0.png\n")
        (tmp_path / split / "masks.txt").write_text("im0_mask.png\nim1_mask.png\n")
    lists = {"train": ["data/images.txt", "data/masks.txt"], "val": ["val/images.txt", "val/masks.txt"]}
    dm = FolderDataModule(root=str(tmp_path), lists=lists, **common(["red", "green", "blue"]))
    assert dm.channel_names == ("red", "green", "blue")
    assert [p.mask.name for p in dm.splits()["train"]] == ["im0_mask.png", "im1_mask.png"]
    assert len(dm.dataset("val")) == 2


def test_lgg_layout_splits_by_patient(tmp_path):
    for patient in ("TCGA_A", "TCGA_B", "TCGA_C"):
        for sl in range(2):
            tifffile.imwrite(
                _mk_parent(tmp_path / patient / f"{patient}_{sl}.tif"),
                RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8),
            )
            tifffile.imwrite(tmp_path / patient / f"{patient}_{sl}_mask.tif", cells_mask(16))
    dm = LggDataModule(root=str(tmp_path), val_fraction=0.3, **common(["flair"]))
    splits = dm.splits()
    assert len(splits["val"]) == 2 and len({p.group for p in splits["val"]}) == 1
    assert dm.dataset("train").samples.images[0].shape == (3, 16, 16)


def _mk_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_hyperlabeled_layout_with_negative_controls(tmp_path):
    for i, sub in enumerate(["cells", "cells", "negatives", "negatives", "cells"]):
        stack = RNG.integers(0, 4096, (16, 24, 24), dtype=np.uint16)
        tifffile.imwrite(_mk_parent(tmp_path / "FullImage" / sub / f"c{i}.ome.tif"), stack)
        mask = cells_mask(24, 1) if sub == "cells" else np.zeros((24, 24), np.uint8)
        write_png(tmp_path / "Mask_Norm" / sub / f"c{i}.png", mask)
    (tmp_path / "codes.txt").write_text("Background\nCell\n")
    dm = HyperlabeledDataModule(root=str(tmp_path), **common(["cytoplasm", "bf_0"]))
    train = dm.dataset("train")
    assert train.samples.images[0].shape == (16, 24, 24)
    assert any(inst.max() == 0 for inst in train.instances) or any(
        inst.max() == 0 for inst in dm.dataset("val").instances
    )
    (tmp_path / "codes.txt").write_text("Background\nCell\nDebris\n")
    with pytest.raises(DataError, match=r"codes\.txt names 3 classes"):
        HyperlabeledDataModule(root=str(tmp_path), **common(["cytoplasm"]))


def test_stacks_without_masks_take_their_target_from_a_channel(tmp_path):
    for i in range(2):
        image = np.zeros((3, 40, 40), np.uint8)
        image[0, 10:20, 10:20] = 200  # the nuclear stain
        image[1:] = RNG.integers(0, 50, (2, 40, 40))
        tifffile.imwrite(tmp_path / f"field{i}.tif", image)
    target = FromChannelTarget(channel="dapi", smooth_sigma=0, min_size=5)
    dm = FolderDataModule(
        root=str(tmp_path),
        images_dir=".",
        masks_dir=None,
        channel_names=["dapi", "bf1", "bf2"],
        val_fraction=0.5,
        channels=ChannelStrategy(["bf1", "bf2"]),
        target=target,
        batch_size=1,
    )
    sample = dm.dataset("train")[0]
    assert sample["image"].shape == (2, 40, 40)
    assert sample["mask"][15, 15] == 1 and sample["mask"][30, 30] == 0
    with pytest.warns(UserWarning, match="also a model input"):
        FolderDataModule(
            root=str(tmp_path),
            images_dir=".",
            masks_dir=None,
            channel_names=["dapi", "bf1", "bf2"],
            val_fraction=0.5,
            channels=ChannelStrategy(["dapi"]),
            target=target,
        ).dataset("train")
    with pytest.raises(ConfigError, match="without masks: choose target=from_channel"):
        FolderDataModule(
            root=str(tmp_path), images_dir=".", masks_dir=None, val_fraction=0.5, **common()
        ).dataset("train")


# ---------------------------------------------------------------- bad input


def bad_folder(tmp_path: Path) -> Path:
    for i in range(4):
        write_png(tmp_path / "images" / f"ok{i}.png", RNG.integers(0, 255, (32, 32), dtype=np.uint8))
        write_png(tmp_path / "masks" / f"ok{i}.png", cells_mask())
    write_png(tmp_path / "images" / "nomask.png", RNG.integers(0, 255, (32, 32), dtype=np.uint8))
    write_png(tmp_path / "images" / "small.png", RNG.integers(0, 255, (32, 32), dtype=np.uint8))
    write_png(tmp_path / "masks" / "small.png", cells_mask(16))
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # truncated
    write_png(tmp_path / "masks" / "broken.png", cells_mask())
    write_png(tmp_path / "images" / "values.png", RNG.integers(0, 255, (32, 32), dtype=np.uint8))
    write_png(tmp_path / "masks" / "values.png", cells_mask(value=128))
    return tmp_path


def test_every_bad_file_is_reported_at_setup_with_its_name(tmp_path):
    dm = FolderDataModule(
        root=str(bad_folder(tmp_path)), lists=None, val_fraction=0.01, split_seed=3, **common()
    )
    pairs = dm.splits()["train"] + dm.splits()["val"]
    dm._splits = {"train": pairs, "val": pairs[:1]}
    with pytest.raises(DataError) as info:
        dm.dataset("train")
    message = str(info.value)
    assert "4 problem(s)" in message and "data.skip_bad=true" in message
    assert "nomask.png: its mask" in message and "is missing" in message
    assert "small.png: image is 32x32 but its mask" in message
    assert "broken.png: cannot be read" in message
    assert "values.png: mask values [128]" in message


def test_skip_bad_keeps_the_good_files_with_one_warning(tmp_path):
    dm = FolderDataModule(root=str(bad_folder(tmp_path)), skip_bad=True, **common())
    pairs = dm.splits()["train"] + dm.splits()["val"]
    dm._splits = {"train": pairs, "val": pairs[:1]}
    with pytest.warns(UserWarning, match="Skipping 4 bad file"):
        assert len(dm.dataset("train")) == 4


def test_channel_count_that_does_not_fit_the_strategy(tmp_path):
    for i in range(2):
        write_png(tmp_path / "images" / f"a{i}.png", RNG.integers(0, 255, (16, 16), dtype=np.uint8))
        write_png(tmp_path / "masks" / f"a{i}.png", cells_mask(16))
    dm = FolderDataModule(root=str(tmp_path), val_fraction=0.5, **common(["gray", 2]))
    with pytest.raises(ConfigError, match="Channel index 2 is out of range: the images have 1 channels"):
        dm.dataset("train")


def test_empty_folder_and_single_group_fail_clearly(tmp_path):
    _mk(tmp_path / "images")
    with pytest.raises(DataError, match="No images found"):
        FolderDataModule(root=str(tmp_path), **common()).dataset("train")
    write_png(tmp_path / "images" / "one.png", RNG.integers(0, 255, (16, 16), dtype=np.uint8))
    with pytest.raises(DataError, match="Cannot split 1 image"):
        FolderDataModule(root=str(tmp_path), **common()).dataset("train")


def test_an_epoch_never_rereads_a_file(tmp_path, monkeypatch):
    import cellseg.data.sources.isbi as isbi_module

    calls = []
    real = isbi_module.read_planes
    monkeypatch.setattr(isbi_module, "read_planes", lambda path: calls.append(path) or real(path))
    dm = IsbiDataModule(root=str(write_isbi(tmp_path)), crop_size=16, **common(["em"]))
    dm.setup("fit")
    for _ in range(2):
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            for _batch in loader:
                pass
    assert len(calls) == 2  # the volume and the label stack, once each


def test_dataset_mean_std_is_measured_on_the_training_split(tmp_path):
    dm = IsbiDataModule(root=str(write_isbi(tmp_path)), normalization={"method": "meanstd"}, **common(["em"]))
    val = dm.dataset("val")  # asking for val first still fits on train
    train_pixels = np.concatenate([img.ravel() for img in dm.dataset("train").samples.images]).astype(
        np.float64
    )
    assert dm.normalization.mean == pytest.approx([train_pixels.mean()])
    assert dm.normalization.std == pytest.approx([train_pixels.std()], rel=1e-6)
    image = val[0]["image"]
    raw = val.samples.images[0][0].astype(np.float32)
    np.testing.assert_allclose(image[0].numpy(), (raw - train_pixels.mean()) / train_pixels.std(), rtol=1e-4)


def test_several_random_crops_per_training_image(tmp_path):
    dm = IsbiDataModule(root=str(write_isbi(tmp_path)), crop_size=16, crops_per_image=3, **common(["em"]))
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(train) == 75 and len(val) == 5
    crops = [train[i]["image"] for i in (0, 25, 50)]  # three crops of slice 0
    assert all(c.shape == (1, 16, 16) for c in crops)
    with pytest.raises(ConfigError, match="crops_per_image"):
        IsbiDataModule(root=str(tmp_path), crop_size=16, crops_per_image=0, **common(["em"])).dataset("train")


# ---------------------------------------------------------------- PNG depth and alpha


def _write_cv2_png(path: Path, planes: np.ndarray) -> Path:
    """A PNG of (P, H, W) planes in RGB(A) order, written by OpenCV (which stores 16-bit colour)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    order = {1: [0], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[planes.shape[0]]
    assert cv2.imwrite(str(path), np.moveaxis(planes[order], 0, -1).squeeze())
    return path


@pytest.mark.parametrize(
    ("planes", "dtype"), [(1, np.uint16), (3, np.uint16), (4, np.uint16), (3, np.uint8), (4, np.uint8)]
)
def test_png_planes_are_read_at_full_depth_in_rgba_order(tmp_path, planes, dtype):
    from cellseg.data.io import probe_planes, read_planes

    top = np.iinfo(dtype).max
    image = RNG.integers(0, top, (planes, 9, 7), dtype=dtype)
    path = _write_cv2_png(tmp_path / "image.png", image)
    read = read_planes(path)
    assert read.dtype == dtype and np.array_equal(read, image)  # bit for bit: 16-bit colour is not truncated
    assert probe_planes(path) == (planes, 9, 7)


def test_gray_alpha_and_palette_pngs_keep_their_planes(tmp_path):
    from PIL import Image

    from cellseg.data.io import probe_planes, read_planes

    gray_alpha = RNG.integers(0, 255, (2, 5, 6), dtype=np.uint8)
    Image.fromarray(np.moveaxis(gray_alpha, 0, -1), "LA").save(tmp_path / "la.png")
    assert np.array_equal(read_planes(tmp_path / "la.png"), gray_alpha)
    assert probe_planes(tmp_path / "la.png")[0] == 2
    palette = Image.fromarray(RNG.integers(0, 255, (5, 6), dtype=np.uint8), "L").convert("P")
    palette.save(tmp_path / "p.png")
    assert read_planes(tmp_path / "p.png").shape == (3, 5, 6) == probe_planes(tmp_path / "p.png")


def test_a_folder_of_rgba_pngs_names_the_alpha_plane_and_blames_the_odd_file(tmp_path):
    for i in range(4):
        _write_cv2_png(
            tmp_path / "images" / f"img{i}.png", RNG.integers(0, 65535, (4, 32, 32), dtype=np.uint16)
        )
        write_png(tmp_path / "masks" / f"img{i}.png", cells_mask())
    write_png(tmp_path / "images" / "gray.png", RNG.integers(0, 255, (32, 32), dtype=np.uint8))
    write_png(tmp_path / "masks" / "gray.png", cells_mask())
    dm = FolderDataModule(root=str(tmp_path), val_fraction=0.4, **common(["red", "alpha"]))
    assert dm.channel_names == ("red", "green", "blue", "alpha")
    with pytest.raises(DataError, match=r"gray.png: has 1 planes .*\(4 of 5 images have those\)"):
        for split in ("train", "val"):
            dm.dataset(split)


def test_prediction_leaves_out_the_alpha_plane_for_a_model_of_the_colour_planes(tmp_path):
    from cellseg.inference.inputs import images_in_file, split_planes

    rgba = RNG.integers(0, 255, (4, 8, 8), dtype=np.uint8)
    (image,) = split_planes(rgba, 3, "auto", tmp_path / "a.png")
    assert np.array_equal(image, rgba[:3])
    assert images_in_file(2, 1, "auto", tmp_path / "gray_alpha.png") == 1
    with pytest.raises(DataError, match="has 4 plane"):
        images_in_file(4, 3, "auto", tmp_path / "four_pages.tif")  # a TIFF's planes are all data
