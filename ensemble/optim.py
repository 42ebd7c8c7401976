"""The optimizer, learning-rate schedule and weight EMA of one training phase.

The head phase trains the head alone on one cosine; the top phase, when there is one, the backbone's last stage
and the head on another; the full phase every parameter but those of the first stages it keeps frozen, with
rates that fall by depth (``ensemble.finetune``) on one cosine or SGDR's cycles (``ensemble.schedule``). The
optimizer is timm's of the configured name (``timm.optim.create_optimizer_v2``), with no weight decay on norms
and biases; the EMA is timm's ``ModelEmaV3``, its decay warming up with the step count.
"""

from __future__ import annotations

from ensemble.finetune import freeze_backbone, freeze_stages, param_groups, stage_count
from ensemble.hparams import TrainConfig
from ensemble.schedule import Cosine, cycle_bounds


def make_optimizer(model, config: TrainConfig, phase: str, steps_per_epoch: int):
    """(optimizer, schedule) of one phase (``TrainConfig.phase``): the head alone (plain cosine), the last
    stage and the head (plain cosine), or every parameter with rates falling by depth (plain cosine or SGDR);
    the optimizer is timm's of that name."""
    from timm.optim import create_optimizer_v2

    freeze_backbone(model, phase == "head")
    if phase == "head":
        groups = param_groups(model, lr=config.lr, weight_decay=config.weight_decay, head_only=True)
        epochs, cycles = config.head_epochs, None
    else:
        top = phase == "top"
        freeze_stages(model.backbone, stage_count(model.backbone) - 1 if top else config.freeze_stages)
        groups = param_groups(model, lr=config.lr * config.finetune_lr_scale, weight_decay=config.weight_decay,
                              n_groups=config.lr_groups, ratio=config.lr_ratio, layer_decay=config.layer_decay)
        epochs = config.top_stage_epochs if top else config.full_epochs
        cycles = None if top else [(a * steps_per_epoch, b * steps_per_epoch)
                                   for a, b in cycle_bounds(epochs, config.cycle_epochs, config.cycle_mult)]
    optimizer = create_optimizer_v2(groups, opt=config.optimizer, lr=groups[0]["lr"],
                                    weight_decay=config.weight_decay, momentum=config.momentum)
    total = steps_per_epoch * epochs
    first_cycle = cycles[0][1] if cycles else total
    warmup = min(int(config.warmup_epochs * steps_per_epoch), first_cycle - 1)
    return optimizer, Cosine(optimizer, total, warmup, cycles=cycles, cycle_decay=config.cycle_decay)


def make_ema(model, decay: float, resumed: dict | None):
    """timm's EMA of ``model``'s weights (None when ``decay`` is 0), restored from a checkpoint when resumed."""
    if decay <= 0:
        return None
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(model, decay=decay, use_warmup=True)
    if resumed:
        ema.module.load_state_dict(resumed["ema"])
    return ema
