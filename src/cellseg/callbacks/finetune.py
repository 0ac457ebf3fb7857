"""Seed 001's schedule: train with the encoder frozen, then unfreeze it with discriminative learning rates.

fastai's ``fit_one_cycle(5, lr)`` with the pretrained encoder frozen, ``unfreeze()``, then
``fit_one_cycle(100, slice(lr/100, lr/2))``: after unfreezing, the encoder's input-side stages learn at
``lr/100``, its deep stages (strides 16 and 32) at the geometric middle and the decoder at ``lr/2``.
With ``restart_one_cycle`` (and ``scheduler=onecycle``) each phase gets its own one-cycle schedule, as
two ``fit_one_cycle`` calls do; other schedulers carry on and schedule the new groups too.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BaseFinetuning
from torch.optim import Optimizer
from torch.optim.lr_scheduler import OneCycleLR

from cellseg.errors import ConfigError
from cellseg.models.encoders import encoder_modules, encoder_stages

log = logging.getLogger(__name__)


def discriminative_lrs(lr_min: float, lr_max: float, count: int) -> list[float]:
    """``count`` learning rates spread geometrically from ``lr_min`` to ``lr_max`` (fastai's even_mults)."""
    if count == 1:
        return [lr_max]
    step = (lr_max / lr_min) ** (1 / (count - 1))
    return [lr_min * step**i for i in range(count)]


class EncoderFinetuning(BaseFinetuning):
    """Freeze ``pl_module.net``'s encoder for ``freeze_epochs`` epochs, then train it with its own LRs.

    After unfreezing, the encoder's groups (input side first) and the rest of the network get learning
    rates from ``lr / lr_min_div`` to ``lr / lr_max_div``, ``lr`` being the optimizer's configured rate.
    BatchNorm layers of the frozen encoder keep training (``train_bn``), as in fastai.
    """

    def __init__(
        self,
        freeze_epochs: int = 5,
        lr_min_div: float = 100.0,
        lr_max_div: float = 2.0,
        train_bn: bool = True,
        restart_one_cycle: bool = True,
    ) -> None:
        super().__init__()
        if freeze_epochs < 1:
            raise ConfigError(
                f"freeze_epochs must be >= 1 (epochs with a frozen encoder), got {freeze_epochs}."
            )
        if not 0 < lr_max_div <= lr_min_div:
            raise ConfigError(
                f"lr_min_div and lr_max_div must satisfy lr_min_div >= lr_max_div > 0 "
                f"(lr/lr_min_div is the smallest rate), got {lr_min_div} and {lr_max_div}."
            )
        self.freeze_epochs = freeze_epochs
        self.lr_min_div = lr_min_div
        self.lr_max_div = lr_max_div
        self.train_bn = train_bn
        self.restart_one_cycle = restart_one_cycle
        self.base_lr: float | None = None
        self._cycle: dict[str, float] | None = None

    # -- freezing ---------------------------------------------------------------------------------
    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        try:
            encoder = encoder_modules(pl_module.net)
        except ValueError as error:
            raise ConfigError(f"callbacks.encoder_finetuning: {error}") from error
        self.freeze(encoder, train_bn=self.train_bn)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        restarting = self._restarting
        for optimizer in trainer.optimizers:
            if not restarting:
                self._drop_frozen(optimizer)
        if self.base_lr is None:  # the configured rate: a one-cycle's peak, else the scheduler's base
            first = trainer.optimizers[0].param_groups[0]
            self.base_lr = float(first.get("max_lr", first.get("initial_lr", first["lr"])))
        super().on_fit_start(trainer, pl_module)  # restores the param groups of a resumed run
        unfrozen = trainer.current_epoch >= self.freeze_epochs
        if unfrozen:
            self.make_trainable(encoder_modules(pl_module.net))
        if self.restart_one_cycle:
            self._restart_schedule(trainer, second_phase=unfrozen)

    @staticmethod
    def _drop_frozen(optimizer: Optimizer) -> None:
        """The optimizer was built from every parameter: the frozen ones come back as their own groups."""
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if p.requires_grad]

    # -- unfreezing -------------------------------------------------------------------------------
    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        if epoch != self.freeze_epochs:
            return
        stages = encoder_stages(pl_module.net)
        lrs = self.group_lrs(len(stages) + 1)
        for group in optimizer.param_groups:  # the decoder and head: the largest rate
            group["lr"] = lrs[-1]
            if "initial_lr" in group:
                group["initial_lr"] = lrs[-1]
        # The encoder's BN layers trained in the decoder's group while frozen; they join their stages.
        encoder_params = {id(p) for modules in stages for m in modules for p in m.parameters()}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in encoder_params]
        for modules, lr in zip(stages, lrs[:-1], strict=True):
            # Not BaseFinetuning.unfreeze_and_add_param_group: it drops parameters whose *values* equal
            # one already in the optimizer (torch.equal), e.g. every freshly initialised BN weight.
            self.make_trainable(modules)
            params = list(self.filter_params(modules, train_bn=True, requires_grad=True))
            optimizer.add_param_group({"params": params, "lr": lr, "initial_lr": lr})
        log.info("Encoder unfrozen at epoch %d; learning rates per group: %s", epoch, lrs)
        trainer = pl_module.trainer
        if self.restart_one_cycle:
            self._restart_schedule(trainer, second_phase=True)
        else:
            self._extend_schedulers(trainer, optimizer)

    def group_lrs(self, count: int) -> list[float]:
        """Learning rates of the encoder groups (input side first) and, last, of the decoder."""
        assert self.base_lr is not None
        return discriminative_lrs(self.base_lr / self.lr_min_div, self.base_lr / self.lr_max_div, count)

    # -- schedules --------------------------------------------------------------------------------
    @staticmethod
    def _extend_schedulers(trainer: pl.Trainer, optimizer: Optimizer) -> None:
        """Give epoch/step schedulers (cosine, ...) a base rate for every new parameter group."""
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            base_lrs = getattr(scheduler, "base_lrs", None)
            if scheduler.optimizer is optimizer and isinstance(base_lrs, list):
                scheduler.base_lrs = base_lrs + [g["lr"] for g in optimizer.param_groups[len(base_lrs) :]]

    def _restart_schedule(self, trainer: pl.Trainer, second_phase: bool) -> None:
        """One one-cycle over the frozen epochs, a second over the rest (per-group peak rates).

        The configured OneCycleLR gives the shape (warm-up fraction, initial and final division);
        only its length and peak rates change.
        """
        for config in trainer.lr_scheduler_configs:
            old = config.scheduler
            if not isinstance(old, OneCycleLR):
                continue
            self._cycle = self._cycle or _cycle_shape(old)
            steps_per_epoch = max(1, int(trainer.estimated_stepping_batches) // max(1, trainer.max_epochs))
            if second_phase:
                epochs = max(1, trainer.max_epochs - self.freeze_epochs)
                max_lr: float | list[float] = [g["lr"] for g in old.optimizer.param_groups]
            else:
                epochs = min(self.freeze_epochs, trainer.max_epochs)
                max_lr = float(self.base_lr or old.optimizer.param_groups[0]["max_lr"])
            config.scheduler = OneCycleLR(
                old.optimizer,
                max_lr=max_lr,
                total_steps=epochs * steps_per_epoch,
                cycle_momentum=old.cycle_momentum,
                **self._cycle,
            )


def _cycle_shape(scheduler: OneCycleLR) -> dict[str, float]:
    """pct_start, div_factor and final_div_factor of a OneCycleLR (it keeps only derived values)."""
    group = scheduler.optimizer.param_groups[0]
    return {
        "pct_start": (float(scheduler._schedule_phases[0]["end_step"]) + 1) / scheduler.total_steps,
        "div_factor": group["max_lr"] / group["initial_lr"],
        "final_div_factor": group["initial_lr"] / group["min_lr"],
    }


__all__ = ["EncoderFinetuning", "discriminative_lrs"]
