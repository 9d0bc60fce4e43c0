"""Where the arithmetic must not follow autocast: under Lightning's ``16-mixed`` or
``bf16-mixed`` the training step runs in autocast, which computes matrix products in 16 bits
even for float32 inputs."""
import contextlib

import torch


def autocast_off(device_type: str):
    """A block in which autocast is off on ``device_type`` (a no-op on a device autocast does
    not know, e.g. ``meta``): matrix products there run in their inputs' dtype."""
    available = getattr(torch.amp, "is_autocast_available", lambda t: t in ("cpu", "cuda"))
    if available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
