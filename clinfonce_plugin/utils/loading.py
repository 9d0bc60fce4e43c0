"""DataLoader options shared by the runners: pinned host memory when the batches go to a
CUDA device (Lightning then copies each batch with ``non_blocking=True``; ``to_device`` does
the same for the loops that copy by hand), and persistent workers for the loaders iterated
every epoch. ``data.num_workers`` itself is resolved by ``config`` (``auto``)."""
import torch


def uses_cuda(accelerator) -> bool:
    """Whether a run with this Lightning ``accelerator`` trains on CUDA (``auto`` picks CUDA
    when the machine has it)."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def loader_options(workers: int, cuda: bool, persistent: bool = True) -> dict:
    """DataLoader keyword arguments: ``workers`` processes (kept alive between epochs when
    ``persistent``), batches in pinned memory when they go to CUDA (pinning costs a copy and
    gains nothing on a CPU-only run)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return {"num_workers": workers, "pin_memory": bool(cuda),
            "persistent_workers": bool(persistent) and workers > 0}


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``batch`` on ``device``; asynchronous to CUDA (from pinned memory it overlaps the
    copy with the host's next work; the device's stream orders it before any use)."""
    return batch.to(device, non_blocking=torch.device(device).type == "cuda")
