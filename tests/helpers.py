"""Helpers shared by several test files (imported as ``tests.helpers``)."""
import importlib.util
import math
import os
from collections import Counter

import pytest
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_bench(name: str):
    """A bench script as a module (bench/ is not a package)."""
    bench = os.path.join(REPO, "bench")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(bench, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def yaml_pretrain_cfg(config: str, augmentations: str, root: str, out_dir: str,
                      max_epochs: int = 2):
    """``scripts/pretrain/<config>.yaml`` with its augmentation file inlined (no hydra), on
    the data at ``root``, writing to ``out_dir``, sized for a test: batch 12, no workers,
    32-wide projector hidden layer, no progress bar."""
    cfg = OmegaConf.load(os.path.join(REPO, "scripts/pretrain", f"{config}.yaml"))
    cfg.pop("defaults")
    cfg.pop("hydra")
    cfg.augmentations = OmegaConf.load(
        os.path.join(REPO, "scripts/pretrain/augmentations", f"{augmentations}.yaml"))
    cfg.data.train_path = root
    cfg.data.num_workers = 0
    cfg.optimizer.batch_size = 12
    cfg.max_epochs = max_epochs
    cfg.checkpoint.dir = out_dir
    cfg.enable_progress_bar = False
    cfg.method_kwargs.proj_hidden_dim = 32
    return cfg


def yaml_linear_cfg(config: str, ckpt: str, root: str, max_epochs: int = 3):
    """``scripts/linear/<config>.yaml`` (no hydra) evaluating ``ckpt`` on the data at ``root``,
    sized for a test: no workers, ``max_epochs`` epochs, no progress bar."""
    lin = OmegaConf.load(os.path.join(REPO, "scripts/linear", f"{config}.yaml"))
    lin.pop("defaults")
    lin.pop("hydra")
    lin.pretrained = ckpt
    lin.data.train_path = root
    lin.data.num_workers = 0
    lin.max_epochs = max_epochs
    lin.enable_progress_bar = False
    return lin


def slow_mi_and_cond_entropy(z, t):
    """Plug-in I(Z;T) and H(Z|T) in bits from nested loops over the joint counts."""
    n = len(z)
    joint, pz, pt = Counter(zip(z, t)), Counter(z), Counter(t)
    mi = sum(c / n * math.log2((c / n) / ((pz[a] / n) * (pt[b] / n))) for (a, b), c in joint.items())
    h = -sum(c / n * math.log2(c / pt[b]) for (a, b), c in joint.items())
    return mi, h


def entry_point_errors(script: str, *args: str):
    """Runs ``python <script> <args>`` from the repository root: (exit code, its ``error:``
    lines, stderr)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return proc.returncode, errors, proc.stderr


def exit_and_errors(main, capsys, *args):
    """``main(list(args))`` in this process, which must exit: (exit code, the stderr lines
    that start with ``error:``)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    return exit_info.value.code, errors


# ops that wait for the device: a scalar read, and the output size of boolean indexing
HOST_READS = {"_local_scalar_dense", "nonzero", "item"}


class DispatchedOps(TorchDispatchMode):
    """``with DispatchedOps() as ops``: ``ops.names`` lists the ATen operators dispatched in
    the block, in order (what a GPU step launches or waits for)."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))
