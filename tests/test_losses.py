"""Loss terms and their composition, checked against hand-computed values on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from cellseg.config import check_command_line, config_dir, group_options
from cellseg.data.pipeline.weight_maps import UNetWeightMap
from cellseg.errors import ConfigError
from cellseg.losses import (
    LOSS_TERMS,
    BinaryCrossEntropyLoss,
    CompositeLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszSoftmaxLoss,
    RegressionLoss,
    TverskyLoss,
    UNetWeightedCrossEntropyLoss,
    trains_regression,
)

IGNORE = -100
# One image of 4 x 4: 6 true cell pixels; "hard" logits predict 8 cell pixels, 5 of them right.
TARGET = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
PRED = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]])


def hard_logits(pred: torch.Tensor, num_classes: int = 2, scale: float = 40.0) -> torch.Tensor:
    """Logits whose softmax is one-hot of ``pred`` to ~1e-17."""
    return (F.one_hot(pred, num_classes).permute(2, 0, 1)[None].float() * 2 - 1) * scale


def batch(mask: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"mask": mask if mask.ndim == 3 else mask[None], **extra}


def compose_loss(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides)).loss


def test_ce_matches_hand_computation_and_cell_weight_is_class_weights_shorthand():
    logits = torch.tensor([[[[0.0, 1.0]], [[1.0, -1.0]]]])  # (1, 2, 1, 2)
    mask = torch.tensor([[[1, 0]]])
    ce0 = math.log(1 + math.exp(-1.0))  # true class 1, logits (0, 1)
    ce1 = math.log(1 + math.exp(-2.0))  # true class 0, logits (1, -1)
    assert CrossEntropyLoss(2)(logits, batch(mask)).item() == pytest.approx((ce0 + ce1) / 2)
    weighted = (5 * ce0 + 1 * ce1) / 6
    assert CrossEntropyLoss(2, class_weights=[1, 5])(logits, batch(mask)).item() == pytest.approx(weighted)
    assert CrossEntropyLoss(2, cell_weight=5)(logits, batch(mask)).item() == pytest.approx(weighted)
    assert CrossEntropyLoss(3, cell_weight=2).class_weights.tolist() == [1.0, 2.0, 2.0]


def test_class_weight_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"loss.class_weights has 3 values .* 2 classes"):
        CrossEntropyLoss(2, class_weights=[1, 2, 3])
    with pytest.raises(ConfigError, match="give one of them"):
        CrossEntropyLoss(2, class_weights=[1, 2], cell_weight=3)
    with pytest.raises(ConfigError, match=r"loss.cell_weight must be in \(0"):
        CrossEntropyLoss(2, cell_weight=0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        CrossEntropyLoss(2, label_smoothing=1.0)


def test_bce_on_two_logits_is_bce_of_their_difference_and_equals_ce():
    logits = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.randint(0, 2, (2, 3, 3), generator=torch.Generator().manual_seed(1))
    z = logits[:, 1] - logits[:, 0]
    expected = F.binary_cross_entropy_with_logits(z, mask.float())
    assert BinaryCrossEntropyLoss(2)(logits, batch(mask)).item() == pytest.approx(expected.item(), abs=1e-6)
    assert CrossEntropyLoss(2)(logits, batch(mask)).item() == pytest.approx(expected.item(), abs=1e-6)
    # pos_weight multiplies the cell pixels' term: -(w y log s(z) + (1 - y) log(1 - s(z))), plain mean.
    by_hand = (3 * mask * F.softplus(-z) + (1 - mask) * F.softplus(z)).mean()
    assert BinaryCrossEntropyLoss(2, pos_weight=3)(logits, batch(mask)).item() == pytest.approx(
        by_hand.item(), abs=1e-6
    )


def test_bce_with_three_classes_is_one_vs_rest():
    logits = torch.tensor([[[[2.0]], [[0.0]], [[-1.0]]]])
    mask = torch.tensor([[[1]]])
    by_hand = (
        F.softplus(torch.tensor(2.0)) + F.softplus(torch.tensor(0.0)) + F.softplus(torch.tensor(-1.0))
    ) / 3
    assert BinaryCrossEntropyLoss(3)(logits, batch(mask)).item() == pytest.approx(by_hand.item())
    with pytest.raises(ConfigError, match="pos_weight"):
        BinaryCrossEntropyLoss(3, pos_weight=[1, 2])


def test_dice_on_hard_predictions():
    logits = hard_logits(PRED)
    tp, fp, fn, s = 5, 3, 1, 1e-5
    loss = DiceLoss(2, smooth=s)(logits, batch(TARGET))
    assert loss.item() == pytest.approx(1 - (2 * tp + s) / (2 * tp + fp + fn + s), abs=1e-6)
    # With background: background has 7 TP, 1 FP (the missed cell pixel), 3 FN.
    with_bg = DiceLoss(2, include_background=True, smooth=0)(logits, batch(TARGET))
    assert with_bg.item() == pytest.approx(1 - (10 / 14 + 14 / 18) / 2, abs=1e-6)


def test_dice_per_image_averages_images_and_batch_dice_pools_them():
    target = torch.stack([TARGET, torch.zeros_like(TARGET)])
    target[1, 0, 0] = 1  # one cell pixel in image 2, predicted as background
    logits = torch.cat([hard_logits(PRED), hard_logits(torch.zeros_like(PRED))])
    per_image = DiceLoss(2, per_image=True, smooth=0)(logits, batch(target))
    assert per_image.item() == pytest.approx(1 - (10 / 14 + 0.0) / 2, abs=1e-6)
    pooled = DiceLoss(2, per_image=False, smooth=0)(logits, batch(target))
    assert pooled.item() == pytest.approx(1 - 10 / 15, abs=1e-6)


def test_tversky_weighs_false_positives_and_negatives_and_half_half_is_dice():
    logits = hard_logits(PRED)
    loss = TverskyLoss(2, alpha=0.3, beta=0.7, smooth=0)(logits, batch(TARGET))
    assert loss.item() == pytest.approx(1 - 5 / (5 + 0.3 * 3 + 0.7 * 1), abs=1e-6)
    soft = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    half = TverskyLoss(2, alpha=0.5, beta=0.5, smooth=0)(soft, batch(TARGET))
    assert half.item() == pytest.approx(DiceLoss(2, smooth=0)(soft, batch(TARGET)).item(), abs=1e-6)
    focal_tversky = TverskyLoss(2, alpha=0.3, beta=0.7, gamma=2, smooth=0)(logits, batch(TARGET))
    assert focal_tversky.item() == pytest.approx(loss.item() ** 2, abs=1e-6)
    with pytest.raises(ConfigError, match=r"loss.alpha must be in \[0.0, 1.0\]"):
        TverskyLoss(2, alpha=1.5)
    with pytest.raises(ConfigError, match="both be 0"):
        TverskyLoss(2, alpha=0, beta=0)


def test_focal_with_gamma_zero_is_ce_and_matches_hand_value():
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    mask = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(4))
    for weights in (None, [1.0, 2.0, 0.5]):
        focal = FocalLoss(3, gamma=0, class_weights=weights)(logits, batch(mask))
        ce = CrossEntropyLoss(3, class_weights=weights)(logits, batch(mask))
        assert focal.item() == pytest.approx(ce.item(), abs=1e-6)
    one = torch.tensor([[[[0.0]], [[math.log(3.0)]]]])  # p(cell) = 3/4
    expected = -((1 - 0.75) ** 2) * math.log(0.75)
    assert FocalLoss(2, gamma=2)(one, batch(torch.tensor([[[1]]]))).item() == pytest.approx(expected)


def test_lovasz_at_hard_predictions_is_one_minus_mean_iou():
    logits = hard_logits(PRED)
    iou_cell, iou_background = 5 / 9, 7 / 11
    loss = LovaszSoftmaxLoss(2)(logits, batch(TARGET))
    assert loss.item() == pytest.approx(1 - (iou_cell + iou_background) / 2, abs=1e-6)
    cell_only = LovaszSoftmaxLoss(2, include_background=False)(logits, batch(TARGET))
    assert cell_only.item() == pytest.approx(1 - iou_cell, abs=1e-6)
    with pytest.raises(ConfigError, match=r"loss\.classes"):
        LovaszSoftmaxLoss(2, classes="some")


def test_unet_weighted_ce_multiplies_ce_by_the_weight_map_and_needs_one():
    logits = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    weight_map = torch.full((1, 4, 4), 1.0)
    weight_map[0, 0] = 3.0
    per_pixel = F.cross_entropy(logits, TARGET[None], reduction="none")
    loss = UNetWeightedCrossEntropyLoss(2)(logits, batch(TARGET, weight_map=weight_map))
    assert loss.item() == pytest.approx((per_pixel * weight_map).mean().item(), abs=1e-6)
    with pytest.raises(ConfigError, match="loss=unet_weighted_ce needs weight maps"):
        UNetWeightedCrossEntropyLoss(2)(logits, batch(TARGET))
    settings = UNetWeightedCrossEntropyLoss(2, cell_weight=4).weight_map_settings
    assert UNetWeightMap(**settings).class_weights == (1.0, 4.0)


def _all_terms(num_classes: int) -> list[torch.nn.Module]:
    # The regression terms (mse, smooth_l1) read no logits: tests/test_instance_targets.py has theirs.
    terms = [
        cls(num_classes=num_classes, ignore_index=IGNORE)
        for cls in LOSS_TERMS.values()
        if not issubclass(cls, RegressionLoss)
    ]
    terms.append(CompositeLoss(num_classes, {"ce": {}, "dice": {}}, ignore_index=IGNORE, dice_weight=0.5))
    return terms


@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_term_ignores_unannotated_pixels(num_classes):
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(2, num_classes, 5, 5, generator=generator)
    mask = torch.randint(0, num_classes, (2, 5, 5), generator=generator)
    mask[:, :2] = IGNORE
    extra = {"weight_map": torch.rand(2, 5, 5, generator=generator) + 0.5}
    for loss in _all_terms(num_classes):
        changed = logits.clone()
        changed[:, :, :2] = torch.randn(2, num_classes, 2, 5, generator=generator) * 10
        changed.requires_grad_(True)
        value = loss(changed, batch(mask, **extra))
        value.backward()
        reference = loss(logits, batch(mask, **extra))
        assert torch.isfinite(value), type(loss).__name__
        assert value.item() == pytest.approx(reference.item(), abs=1e-5), type(loss).__name__
        assert changed.grad[:, :, :2].abs().max() == 0, type(loss).__name__


def test_a_batch_without_annotated_pixels_gives_zero_with_a_graph():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    mask = torch.full((1, 3, 3), IGNORE)
    for loss in _all_terms(2):
        value = loss(logits, batch(mask, weight_map=torch.ones(1, 3, 3)))
        assert value.item() == 0.0
        value.backward()


def test_composite_sums_weighted_terms_and_exposes_them():
    logits = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(7))
    loss = CompositeLoss(
        2, {"ce": {"label_smoothing": 0.0}, "dice": {}}, cell_weight=5, ce_weight=1, dice_weight=0.5
    )
    total = loss(logits, batch(TARGET))
    ce = CrossEntropyLoss(2, class_weights=[1, 5])(logits, batch(TARGET))
    dice = DiceLoss(2)(logits, batch(TARGET))
    assert total.item() == pytest.approx(ce.item() + 0.5 * dice.item(), abs=1e-6)
    assert set(loss.last_terms) == {"ce", "dice"}
    assert loss.last_terms["dice"].item() == pytest.approx(dice.item())
    off = CompositeLoss(2, {"ce": {}, "dice": {}}, dice_weight=0)
    off(logits, batch(TARGET))
    assert set(off.last_terms) == {"ce"}


def test_composite_rejects_unknown_terms_keys_and_conflicts():
    with pytest.raises(ConfigError, match=r"Unknown loss term.*'dcie'.*Valid terms: ce, bce, dice"):
        CompositeLoss(2, {"dcie": {}})
    with pytest.raises(ConfigError, match=r"loss.focal_weight.*ce_weight, dice_weight"):
        CompositeLoss(2, {"ce": {}, "dice": {}}, focal_weight=1.0)
    with pytest.raises(ConfigError, match="no term of this loss takes class weights"):
        CompositeLoss(2, {"bce": {}, "dice": {}}, cell_weight=2)
    with pytest.raises(ConfigError, match="both set"):
        CompositeLoss(2, {"ce": {"cell_weight": 2}}, cell_weight=3)
    with pytest.raises(ConfigError, match="must be > 0"):
        CompositeLoss(2, {"ce": {}}, ce_weight=0)
    with pytest.raises(ConfigError, match=r"loss\.ce_weight"):
        CompositeLoss(2, {"ce": {}}, ce_weight=-1)


def test_bce_dice_option_is_seed_003s_loss():
    """seed 003: 0.5 * BCEWithLogits + (1 - mean per-sample soft Dice), smooth 1e-5, on one logit."""
    generator = torch.Generator().manual_seed(8)
    logits = torch.randn(3, 2, 6, 6, generator=generator)
    mask = torch.randint(0, 2, (3, 6, 6), generator=generator)
    z, y = logits[:, 1] - logits[:, 0], mask.float()
    bce = F.binary_cross_entropy_with_logits(z, y)
    p, smooth = torch.sigmoid(z).view(3, -1), 1e-5
    dice = (2 * (p * y.view(3, -1)).sum(1) + smooth) / (p.sum(1) + y.view(3, -1).sum(1) + smooth)
    expected = 0.5 * bce + 1 - dice.mean()
    loss = instantiate(compose_loss("loss=bce_dice"), num_classes=2, ignore_index=IGNORE)
    assert loss(logits, batch(mask)).item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("option", group_options("loss"))
@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_loss_option_builds_and_trains(option, num_classes):
    loss = instantiate(compose_loss(f"loss={option}"), num_classes=num_classes, ignore_index=IGNORE)
    logits = torch.randn(2, num_classes, 8, 8, requires_grad=True)
    mask = torch.randint(0, num_classes, (2, 8, 8))
    maps = torch.randn(2, 2, 8, 8, requires_grad=True)  # loss=distance and loss=flows score maps too
    extra = {"regression": torch.rand(2, 2, 8, 8), "regression_output": maps}
    value = loss(logits, batch(mask, weight_map=torch.ones(2, 8, 8), **extra))
    value.backward()
    assert torch.isfinite(value) and value.item() >= 0 and torch.isfinite(logits.grad).all()
    if trains_regression(loss):
        assert maps.grad.abs().sum() > 0


def test_short_sweep_names_exist_and_reach_the_terms():
    check_command_line(["-m", "loss.cell_weight=0.1,1,10"])
    check_command_line(["loss.class_weights=[1,5]"])
    check_command_line(["-m", "loss=dice_ce", "loss.dice_weight=0,0.5,1", "loss.cell_weight=2"])
    check_command_line(["loss=bce_dice", "loss.bce_weight=1", "loss.terms.dice.per_image=false"])
    check_command_line(["loss=unet_weighted_ce", "loss.w0=5", "loss.sigma=3"])
    with pytest.raises(ConfigError, match="cell_weight"):
        check_command_line(["loss=bce_dice", "loss.cell_weight=2"])
    loss = instantiate(
        compose_loss("loss=dice_ce", "loss.cell_weight=4", "loss.dice_weight=2"), num_classes=2
    )
    assert loss.weights == {"ce": 1.0, "dice": 2.0}
    assert loss.terms["ce"].class_weights.tolist() == [1.0, 4.0]
    ce = instantiate(compose_loss("loss.cell_weight=10"), num_classes=2)
    assert ce.class_weights.tolist() == [1.0, 10.0]
