"""The accelerator a run actually uses: a config written for a GPU runs on the CPU of a
machine without one (said once), as solo-learn users expect when trying a config locally."""
import torch


def resolve_accelerator(accelerator) -> str:
    """``accelerator`` itself, or ``"cpu"`` (with a message) when it asks for a GPU that this
    machine does not have; unset means the CPU."""
    if not accelerator:
        return "cpu"
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        print("[clinfonce] no GPU on this machine: training on the CPU")
        return "cpu"
    return accelerator
