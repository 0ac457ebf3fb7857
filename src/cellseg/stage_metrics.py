"""Everything measured in one stage (train, val or test) of an epoch, synced across DDP ranks."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torchmetrics import MeanMetric, Metric

from cellseg.data.pipeline.targets import Decoder
from cellseg.errors import ConfigError
from cellseg.metrics import InstanceMetrics, IsbiMetrics, SegmentationMetrics

#: The scores a run is summarised by (HParams table, per-epoch log line), where the data set logs them.
MAIN_SCORES = ("val/dice", "val/iou", "val/ap50", "val/v_rand")
#: Metrics a data set can ask for on top of the pixel scores (``data.eval_metrics``).
EXTRA_METRICS = ("isbi", "instances")


class StageMetrics(nn.Module):
    """Pixel scores and loss always; ISBI and instance scores when the data set asks for them.

    ISBI scores need whole slices and instance scores need instance ids, so they run in validation and
    test only. Each is a torchmetrics object whose state is summed over ranks, so epoch values are
    exact under DDP.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        ignore_index: int,
        extra: Sequence[str] = (),
        training: bool = False,
        decode: Decoder | None = None,
    ) -> None:
        """``decode`` turns one image's class probabilities (K, H, W) and regression maps (R, H, W) into
        instance ids, for targets with regression outputs (the target's :meth:`decode`)."""
        super().__init__()
        unknown = sorted(set(extra) - set(EXTRA_METRICS))
        if unknown:
            raise ConfigError(
                f"data.eval_metrics has unknown {unknown}; choose from {', '.join(EXTRA_METRICS)}."
            )
        self.scores = SegmentationMetrics(class_names, ignore_index)
        self.loss = MeanMetric()
        extra = () if training else tuple(extra)
        self.isbi = IsbiMetrics(ignore_index=ignore_index) if "isbi" in extra else None
        self.decode = decode
        instance_mode = "instances" if decode else "boundary" if "border" in class_names else "components"
        self.instances = InstanceMetrics(predictions=instance_mode) if "instances" in extra else None

    def update(
        self,
        logits: torch.Tensor,
        preds: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        loss: torch.Tensor,
        regression: torch.Tensor | None = None,
    ) -> None:
        """One training/validation batch: class logits, their argmax, the batch, its loss and the
        network's regression maps (targets with regression outputs)."""
        self.loss.update(loss.detach(), weight=batch["mask"].shape[0])
        self._update_scores(lambda: logits.detach().float().softmax(dim=1), preds, batch, regression)

    def update_from_probabilities(
        self,
        probabilities: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        regression: torch.Tensor | None = None,
    ) -> None:
        """Predictions that are already class probabilities (B, K, H, W), e.g. from tiled inference."""
        self._update_scores(lambda: probabilities, probabilities.argmax(dim=1), batch, regression)

    def _update_scores(
        self,
        probabilities: Callable[[], torch.Tensor],
        preds: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        regression: torch.Tensor | None,
    ) -> None:
        self.scores.update(preds, batch["mask"])
        if self.isbi is not None:
            self.isbi.update(1.0 - probabilities()[:, 0], batch["mask"])
        if self.instances is not None and "instances" in batch:
            predicted = preds if self.decode is None else self._decoded(probabilities(), regression)
            self.instances.update(predicted, batch["instances"].clamp_min(0))

    def _decoded(self, probabilities: torch.Tensor, regression: torch.Tensor | None) -> torch.Tensor:
        """Instance ids (B, H, W) of a batch, each image decoded by the target."""
        assert self.decode is not None
        probs = probabilities.detach().float().cpu().numpy()
        maps = regression.detach().float().cpu().numpy() if regression is not None else [None] * len(probs)
        return torch.stack(
            [torch.from_numpy(self.decode(p, r).astype(np.int64)) for p, r in zip(probs, maps, strict=True)]
        )

    def merge(self, other: StageMetrics) -> None:
        """Add another's accumulated state (every state is a sum): pooled scores from per-image ones."""
        for mine, theirs in zip(self._metrics(), other._metrics(), strict=True):
            mine.merge_state(theirs)
            # merge_state leaves the update count alone; compute() warns on a count of 0.
            mine._update_count += theirs.update_count

    def _metrics(self) -> list[Metric]:
        return [m for m in (self.scores, self.loss, self.isbi, self.instances) if m is not None]

    def compute(self) -> dict[str, float]:
        values = self.scores.compute()
        if self.loss.update_count:
            values["loss"] = float(self.loss.compute())
        for extra in (self.isbi, self.instances):
            if extra is not None:
                values.update(extra.compute())
        return values

    def names(self) -> list[str]:
        """The keys :meth:`compute` returns, known before any batch: the scores of empty states."""
        names = {"loss"}
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for metric in (self.scores, self.isbi, self.instances):
                if metric is not None:
                    names.update(type(metric).compute(metric))  # unwrapped: no caching, no sync
        return sorted(names)

    def reset(self) -> None:
        for metric in self._metrics():
            metric.reset()
