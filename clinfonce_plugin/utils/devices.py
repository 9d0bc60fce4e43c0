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


def eval_device(accelerator) -> torch.device:
    """The one device of an evaluation run (linear, fine-tuning): CUDA for auto, gpu and cuda
    when this machine has it, MPS when asked for and present, else the CPU."""
    accelerator = resolve_accelerator(accelerator)
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator == "mps":
        if torch.backends.mps.is_available():
            return torch.device("mps")
        print("[clinfonce] no MPS device on this machine: running on the CPU")
    return torch.device("cpu")


def lightning_accelerator(device: torch.device) -> str:
    """Lightning's accelerator name for ``device``."""
    return {"cuda": "gpu"}.get(device.type, device.type)


def host_reads_free(tensor: torch.Tensor) -> bool:
    """Whether reading ``tensor``'s values back to the host costs nothing: it is on the CPU.
    The training step's checks and early stops read a value only then; on an accelerator
    the read would wait for its queue every step. The one place of that rule (the op-count
    benchmark counts the accelerator path on the CPU by replacing it)."""
    return tensor.device.type == "cpu"
