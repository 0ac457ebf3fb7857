"""Every ``model=`` option: odd input sizes, gradients, seed parameter counts, pretrained weights offline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml
from torch import nn

from cellseg.config import config_dir
from cellseg.errors import ConfigError
from cellseg.models import ARCHITECTURES, create_model, encoder_stages
from cellseg.models.encoders import unwrap
from cellseg.models.pixelshuffle import PixelShuffleICNR


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


class ModelTest:
    """One subclass per option (the smp pattern): tiny, odd-sized inputs through forward and backward."""

    arch: str
    options: ClassVar[dict] = {}
    in_channels = 3
    classes = 2
    size = (37, 45)  # divisible by no stride

    @pytest.fixture(scope="class")
    @classmethod
    def net(cls) -> nn.Module:
        torch.manual_seed(0)
        return create_model(cls.arch, cls.in_channels, cls.classes, **cls.options)

    def test_forward_backward_keeps_input_size(self, net):
        x = torch.randn(2, self.in_channels, *self.size, requires_grad=True)
        logits = net(x)
        assert logits.shape == (2, self.classes, *self.size)
        assert torch.isfinite(logits).all()
        logits.square().mean().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0  # the whole input reaches the output
        first = next(p for p in net.parameters() if p.ndim == 4)
        assert first.grad is not None and torch.isfinite(first.grad).all()
        net.zero_grad(set_to_none=True)

    def test_train_and_eval_modes_both_work_on_one_image(self, net):
        net.eval()
        with torch.no_grad():
            assert net(torch.randn(1, self.in_channels, 20, 27)).shape == (1, self.classes, 20, 27)
        net.train()


class TestUnet(ModelTest):
    arch, options = "unet", {"encoder": "resnet18"}


class TestUnetPlusPlus(ModelTest):
    arch, options = "unetplusplus", {"encoder": "resnet18"}


class TestMANet(ModelTest):
    arch, options = "manet", {"encoder": "resnet18"}


class TestLinknet(ModelTest):
    arch, options = "linknet", {"encoder": "resnet18"}


class TestFPN(ModelTest):
    arch, options = "fpn", {"encoder": "resnet18"}


class TestPSPNet(ModelTest):
    arch, options = "pspnet", {"encoder": "resnet18"}


class TestPAN(ModelTest):
    arch, options, size = "pan", {"encoder": "resnet18"}, (21, 30)  # padded to PAN's 128 minimum


class TestDeepLabV3(ModelTest):
    arch, options = "deeplabv3", {"encoder": "resnet18"}


class TestDeepLabV3Plus(ModelTest):
    arch, options = "deeplabv3plus", {"encoder": "resnet18"}


class TestUPerNet(ModelTest):
    arch, options = "upernet", {"encoder": "resnet18"}


class TestSegformer(ModelTest):
    arch = "segformer"  # its default MiT-B0 encoder


class TestTimmEncoder(ModelTest):
    arch, options, in_channels = "unet", {"encoder": "tu-resnet10t"}, 1


class TestUnetClassic(ModelTest):
    arch, options = "unet_classic", {"init_features": 8}


class TestUnetClassicValid(ModelTest):
    arch, in_channels, classes = "unet_classic", 1, 3
    options: ClassVar[dict] = {
        "init_features": 4,
        "padding": "valid",
        "batch_norm": False,
        "dropout": 0.2,
        "init": "he",
    }


class TestUnetClassicBilinear(ModelTest):
    arch = "unet_classic"
    options: ClassVar[dict] = {"init_features": 4, "depth": 3, "upsampling": "bilinear", "init": "normal"}


class TestDeConvNet(ModelTest):
    arch, size = "deconvnet", (19, 23)


class TestSegSkipNet(ModelTest):
    arch, size = "segskipnet", (19, 23)


class TestUnetPixelShuffle(ModelTest):
    arch, options, in_channels = "unet_pixelshuffle", {"encoder": "resnet18"}, 4


def test_every_option_has_a_config_that_builds():
    files = sorted((config_dir() / "model").glob("*.yaml"))
    assert {f.stem for f in files} == set(ARCHITECTURES)
    for path in files:
        options = yaml.safe_load(path.read_text())
        assert options.pop("arch") == path.stem
        assert not {"in_channels", "classes"} & set(options), path
        assert isinstance(create_model(path.stem, 3, 2, **options), nn.Module)


# --- seed architectures: parameter counts from the seeds' own tables ---------------------------------


def _conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def test_deconvnet_weights_match_seed_000_table():
    # Seed 000's README table, column "Weights" (weight.numel(), no biases), rows conv1-1 .. output.
    table = [1728, 36864, 73728, 147456, 294912, 589824, 1179648, 2359296, 4718592, 9437184]  # conv1-1..5-2
    table += [
        4718592,
        2359296,
        1179648,
        589824,
        294912,
        147456,
        73728,
        36864,
        36864,
        128,
    ]  # deconv5-3..output
    out_channels = [
        64,
        64,
        128,
        128,
        256,
        256,
        512,
        512,
        1024,
        1024,
        512,
        512,
        256,
        256,
        128,
        128,
        64,
        64,
        64,
    ]
    for arch in ("deconvnet", "segskipnet"):
        net = unwrap(create_model(arch, 3, 2))
        weights = [m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert weights == table
        # plus BN (weight and bias) after each of the 19 hidden layers and the output conv's 2 biases
        assert _params(net) == sum(table) + 2 * sum(out_channels) + 2 == 28_288_450


def test_unet_classic_matches_seed_003_printout():
    # Seed 003's printed UNet(3 -> 1, features 16): 5 Conv_Blocks (bias-free 3x3 convs + BN), 4
    # Upsampling_Blocks (2x2 transposed conv with bias, then two such convs + BN), 1x1 conv with bias.
    widths = [16, 32, 64, 128, 256]
    expected = 0
    for cin, cout in zip([3, *widths[:-1]], widths, strict=True):
        expected += _conv(cin, cout, bias=False) + _conv(cout, cout, bias=False) + 4 * cout
    for cin in reversed(widths[1:]):
        cout = cin // 2
        expected += (
            _conv(cin, cout, k=2) + _conv(cin, cout, bias=False) + _conv(cout, cout, bias=False) + 4 * cout
        )
    expected += _conv(16, 1, k=1)
    net = create_model("unet_classic", 3, 1, init_features=16)
    assert _params(net) == expected == 1_942_577


def test_unet_classic_valid_matches_seed_004():
    # Seed 004: UNet_BN 1 -> 1 without BN (biased convs), valid encoder and centre, same decoder.
    widths = [64, 128, 256, 512, 1024]
    expected = sum(_conv(a, b) + _conv(b, b) for a, b in zip([1, *widths[:-1]], widths, strict=True))
    expected += sum(_conv(c, c // 2, k=2) + _conv(c, c // 2) + _conv(c // 2, c // 2) for c in widths[:0:-1])
    expected += _conv(64, 1, k=1)
    options = {"padding": "valid", "batch_norm": False, "dropout": 0.2, "init": "he"}
    assert _params(create_model("unet_classic", 1, 1, **options)) == expected
    # 636 x 636 in, 512 x 512 out (the sizes do not depend on the width: a thin copy checks them)
    thin = create_model("unet_classic", 1, 1, **{**options, "init_features": 2})
    assert thin.net.valid_input_size(512) == 636 and thin.net.valid_output_size(636) == 512
    with torch.no_grad():
        assert thin.net(torch.zeros(1, 1, 636, 636)).shape[-2:] == (512, 512)


def test_valid_unet_output_is_the_network_on_the_mirrored_tile():
    torch.manual_seed(0)
    net = create_model("unet_classic", 1, 2, depth=2, init_features=2, padding="valid").eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert net.net.valid_input_size(16) == 44  # (16/4 + 4) * 2 + 4 = 20, 20 * 2 + 4 = 44
        direct = net.net(torch.nn.functional.pad(x, (14, 14, 14, 14), mode="reflect"))  # 44 -> 16
        assert torch.allclose(net(x), direct, atol=1e-6)


def test_init_schemes():
    he = create_model("unet_classic", 1, 2, init_features=8, init="he", batch_norm=False)
    conv = unwrap(he).down[1][0]  # 8 -> 16 channels, 3x3
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 16)) ** 0.5, rel=0.1)
    assert conv.bias.abs().max() == 0
    normal = create_model("unet_classic", 1, 2, init_features=8, init="normal")
    assert unwrap(normal).down[1][0].weight.std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"padding": "full"}, "model.padding"),
        ({"upsampling": "nearest"}, "model.upsampling"),
        ({"init": "xavier"}, "model.init"),
        ({"depth": 0}, "model.depth"),
        ({"widht": 3}, "model.widht"),
    ],
)
def test_unet_classic_rejects_bad_options_by_name(options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        create_model("unet_classic", 1, 2, **options)


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown model\.arch 'unett'.*unet_classic"):
        create_model("unett", 3, 2)


def test_icnr_pixel_shuffle_starts_as_nearest_neighbour_upsampling():
    layer = PixelShuffleICNR(8, 4)
    y = layer(torch.randn(1, 8, 5, 6))
    assert y.shape == (1, 4, 10, 12)
    blocks = y.unfold(2, 2, 2).unfold(3, 2, 2)  # every 2x2 block holds one value: no checkerboard
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))


def test_encoder_stages_split_resnet_like_fastai():
    net = create_model("unet_pixelshuffle", 3, 2, encoder="resnet18")
    shallow, deep = encoder_stages(net)
    encoder = unwrap(net).encoder
    assert deep == [encoder.layer3, encoder.layer4]
    assert shallow == [encoder.conv1, encoder.bn1, encoder.layer1, encoder.layer2]


# --- pretrained weights: local cache only ---------------------------------------------------------------


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.mark.parametrize("arch", ["unet", "unet_pixelshuffle"])
def test_pretrained_weights_not_cached_fail_fast_with_how_to_fetch(arch, empty_hub_cache):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        create_model(arch, 3, 2, encoder="resnet18", encoder_weights="imagenet")
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "hf download smp-hub/resnet18.imagenet" in message
    assert str(empty_hub_cache) in message and "HF_HUB_CACHE" in message
    assert "model.encoder_weights=null" in message


def test_unknown_pretrained_weights_name_the_available_ones():
    with pytest.raises(ConfigError, match=r"model\.encoder_weights='instagram'.*Available: imagenet"):
        create_model("unet", 3, 2, encoder="resnet18", encoder_weights="instagram")


def _cache_random_resnet18(cache: Path) -> dict[str, torch.Tensor]:
    """A randomly initialised ResNet18 encoder stored where smp looks for its ImageNet weights."""
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import encoders, get_encoder

    settings = encoders["resnet18"]["pretrained_settings"]["imagenet"]
    folder = cache / f"models--{settings['repo_id'].replace('/', '--')}" / "snapshots" / settings["revision"]
    folder.mkdir(parents=True)
    torch.manual_seed(1)
    state = {k: v.contiguous() for k, v in get_encoder("resnet18", in_channels=3).state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    )
    return state


@pytest.mark.parametrize(
    ("arch", "in_channels"), [("unet", 1), ("unet_pixelshuffle", 1), ("unet_pixelshuffle", 4)]
)
def test_cached_weights_load_and_first_conv_is_adapted(arch, in_channels, empty_hub_cache):
    saved = _cache_random_resnet18(empty_hub_cache)
    net = create_model(arch, in_channels, 2, encoder="resnet18", encoder_weights="imagenet")
    encoder = unwrap(net).encoder
    assert torch.equal(encoder.layer3[0].conv1.weight, saved["layer3.0.conv1.weight"])
    rgb = saved["conv1.weight"]
    if in_channels == 1:
        expected = rgb.sum(dim=1, keepdim=True)  # grey input: the sum of the RGB filters
    else:
        expected = torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / in_channels  # RGB cycled, rescaled
    assert torch.allclose(encoder.conv1.weight, expected)
    x = torch.randn(1, in_channels, 33, 35)
    assert net(x).shape == (1, 2, 33, 35)
