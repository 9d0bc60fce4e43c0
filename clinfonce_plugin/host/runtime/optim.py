"""Optimisers and learning-rate schedules of the bundled runtime (torch + timm)."""
import math
from typing import Any, Dict, List

import torch
from timm.optim import Lars
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "lars": Lars,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
SCHEDULERS = ["warmup_cosine", "step", "none"]


def exclude_bias_and_norm_from_wd(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Splits every parameter group: 1-d parameters (biases, norm scales/shifts) get wd 0."""
    out = []
    for group in groups:
        params = list(group["params"])
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        if decay:
            out.append({**group, "params": decay})
        if no_decay:
            out.append({**group, "name": f"{group.get('name', 'group')}_no_wd",
                        "params": no_decay, "weight_decay": 0.0})
    return out


def build_optimizer(name: str, groups, lr: float, weight_decay: float, kwargs: Dict[str, Any]):
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}. Choose from {sorted(OPTIMIZERS)}")
    kwargs = dict(kwargs)
    if name == "lars":
        # timm's Lars skips the trust ratio of 1-d params when exclude_bias_n_norm is not given;
        # solo-learn's key names are mapped onto timm's.
        kwargs.pop("exclude_bias_n_norm", None)
        eta = kwargs.pop("eta", None)
        if eta is not None:
            kwargs["trust_coeff"] = eta
        clip = kwargs.pop("clip_lr", None)
        if clip is not None:
            kwargs["trust_clip"] = clip
    # parameter groups carry a "name" for logging; torch accepts extra keys in groups
    return OPTIMIZERS[name](groups, lr=lr, weight_decay=weight_decay, **kwargs)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int,
                         start_factor: float, min_factor: float) -> float:
    """Multiplier of the base lr: linear from start_factor to 1 over warmup, then cosine to
    min_factor at total_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + 0.5 * (1.0 - min_factor) * (1.0 + math.cos(math.pi * progress))


def build_warmup_cosine(optimizer, warmup_steps: int, total_steps: int, lr: float,
                        warmup_start_lr: float, min_lr: float) -> LambdaLR:
    start = warmup_start_lr / lr if lr > 0 else 1.0
    floor = min_lr / lr if lr > 0 else 0.0
    return LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, start, floor),
    )
