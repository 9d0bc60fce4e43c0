"""Operator calls per training step of simclr, clinfonce and wcl: the CPU proxy of the GPU
step ratio of ``bench/gpu_check.py``.

    python bench/op_count.py            # prints one table, writes bench/results/op_count.json
    python bench/op_count.py --quick    # tiny backbone and batch (checks the script)

At gpu_check's size (CIFAR-stem ResNet-18, 32 px, batch 256, bf16) a GPU step is bound by
launching kernels, so the number of operators a step dispatches is what its time follows.
This script builds the three methods exactly as gpu_check's step-ratio part does
(``speed.build``, the CIFAR stem, SGD with momentum, bf16 autocast on by default), runs
warm steps (``training_step`` + backward + optimizer step, ``log`` a no-op as there) and
counts every ATen operator the dispatcher runs (a ``TorchDispatchMode``: an op's internal
calls are not counted again), per step:

- ``ops``: all operator calls;
- ``kernels``: those that do work on a device -- views and metadata-only ops (``view``,
  ``t``, ``expand``, ``detach``, ``empty``, ...) are left out;
- ``host reads``: ``_local_scalar_dense`` calls (``.item()``, ``int(t)``, ``bool(t)``),
  each a device synchronisation on a GPU.

Each op is attributed to the region it comes from: a module of the model (``backbone``,
``classifier``, ``projector``, ``weak_projector``, the cluster ``provider``), a function of
the method (loss, weak labels, statistics logged, see ``REGIONS``), the optimizer, or the
method's own glue code (``step (other)``). Backward ops are attributed to the region whose
forward created their autograd node (the node's ``metadata``, tagged in forward by a
``TorchFunctionMode``).

``--path accelerator`` (default) counts the code path a step takes on a GPU: the few
branches that read a value back only when that is free (``utils.devices.host_reads_free``:
range checks, the CPU's early stop of the connected-components rounds) take their
accelerator branch. ``--path cpu`` counts what the CPU runs.
"""
import argparse
import contextlib
import functools
import json
import os
import sys
from collections import Counter, defaultdict
from typing import Callable, Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import torch  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

METHODS = ("simclr", "clinfonce", "wcl")
# ops that launch no kernel: metadata only, or allocation without initialisation
NO_KERNEL = {"empty", "empty_strided", "empty_like", "detach", "alias", "lift_fresh",
             "_unsafe_view", "resize_", "set_", "sym_size", "sym_stride", "sym_numel",
             "sym_storage_offset", "_reshape_alias", "as_strided", "is_same_size",
             "_has_compatible_shallow_copy_type", "record_stream"}
# (module attribute, function name) -> region; the step's functions whose ops are counted
# under their own name (the innermost wins)
REGIONS = {
    ("clinfonce_plugin.host.runtime.methods", "nt_xent_masked"): "loss",
    ("clinfonce_plugin.host.runtime.base", "accuracy_at_k"): "probe accuracy (logged)",
    ("clinfonce_plugin.methods.clinfonce", "cl_infonce"): "loss",
    ("clinfonce_plugin.methods.clinfonce", "mean_positives"): "statistics (logged)",
    ("clinfonce_plugin.methods.clinfonce", "all_gather_no_grad"): "statistics (logged)",
    ("clinfonce_plugin.methods.wcl", "instance_nce"): "loss",
    ("clinfonce_plugin.methods.wcl", "wcl_swap"): "loss",
    ("clinfonce_plugin.methods.wcl", "multicrop_nce"): "loss",
    ("clinfonce_plugin.methods.wcl", "multicrop_swap"): "loss",
    ("clinfonce_plugin.methods.wcl", "weak_labels_of_views"): "weak labels",
    ("clinfonce_plugin.methods.wcl", "component_statistics"): "statistics (logged)",
    ("clinfonce_plugin.methods.wcl", "mean_view_statistics"): "statistics (logged)",
    ("clinfonce_plugin.methods.wcl", "all_gather_no_grad"): "statistics (logged)",
    ("clinfonce_plugin.methods.wcl", "gather_with_grad"): "step (other)",
}
# method of a class -> region (the weak-label normalisation lives in WCL._weak_labels)
METHOD_REGIONS = {("clinfonce_plugin.methods.wcl", "WCL", "_weak_labels"): "weak labels",
                  ("clinfonce_plugin.host.runtime.base", "BaseMethod", "_base_shared_step"):
                      "probe loss"}
MODULE_REGIONS = ("backbone", "classifier", "projector", "weak_projector",
                  "instance_projector", "provider")
SHARED = ("backbone", "classifier", "probe loss", "probe accuracy (logged)", "projector",
          "optimizer")


class Tracker:
    """The current region (a stack) and the per-region counts of one measurement."""

    def __init__(self) -> None:
        self.stack: List[str] = ["step (other)"]
        self.ops: Counter = Counter()
        self.kernels: Counter = Counter()
        self.reads = 0
        self.names: Counter = Counter()

    @contextlib.contextmanager
    def region(self, name: str):
        self.stack.append(name)
        try:
            yield
        finally:
            self.stack.pop()

    def wrap(self, fn: Callable, name: str) -> Callable:
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with self.region(name):
                out = fn(*args, **kwargs)
                # a custom autograd Function's node is made by no torch function call the
                # Tagger sees: tag what the function returns before its caller uses it
                tag_graph(out, name)
                return out
        return wrapped


class Tagger(TorchFunctionMode):
    """Tags every autograd node created in forward with the region current at its creation
    (``node.metadata['region']``): the nodes reachable from a call's outputs that carry no
    tag yet were made by that call."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tag_graph(out, self.tracker.stack[-1])
        return out


def tag_graph(out, region: str) -> None:
    """Tags the untagged autograd nodes reachable from ``out``'s tensors with ``region``."""
    todo = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
    while todo:
        node = todo.pop()
        # a leaf's AccumulateGrad is no region's: its ops count as "param grads"
        if node is None or "region" in node.metadata or node.name().endswith(
                "AccumulateGrad"):
            continue
        node.metadata["region"] = region
        todo.extend(fn for fn, _ in node.next_functions)


def _tensors(out) -> List[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


class Counting(TorchDispatchMode):
    """Counts every dispatched ATen op under its region (backward: its node's region)."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        node = torch._C._current_autograd_node()
        if node is None:
            region = self.tracker.stack[-1]
        else:
            region = node.metadata.get("region", "param grads (AccumulateGrad)")
        t = self.tracker
        name = func.overloadpacket.__name__
        t.ops[region] += 1
        t.names[name] += 1
        if not (func.is_view or name in NO_KERNEL):
            t.kernels[region] += 1
        if name == "_local_scalar_dense":
            t.reads += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def instrumented(model: torch.nn.Module, tracker: Tracker, path: str):
    """Region hooks on the model's modules, region wrappers on the step's functions, and the
    accelerator path (``--path accelerator``) for the duration of the block."""
    import importlib

    undo = []
    for (mod_name, fn_name), region in REGIONS.items():
        mod = importlib.import_module(mod_name)
        if hasattr(mod, fn_name):
            old = getattr(mod, fn_name)
            setattr(mod, fn_name, tracker.wrap(old, region))
            undo.append((mod, fn_name, old))
    for (mod_name, cls_name, fn_name), region in METHOD_REGIONS.items():
        cls = getattr(importlib.import_module(mod_name), cls_name)
        old = cls.__dict__[fn_name]
        setattr(cls, fn_name, tracker.wrap(old, region))
        undo.append((cls, fn_name, old))
    if path == "accelerator":
        from clinfonce_plugin.utils import devices

        undo.append((devices, "host_reads_free", devices.host_reads_free))
        devices.host_reads_free = lambda tensor: False
    handles = []
    for name in MODULE_REGIONS:
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module):
            handles.append(module.register_forward_pre_hook(
                lambda m, a, name=name: tracker.stack.append(name)))
            handles.append(module.register_forward_hook(
                lambda m, a, o: tracker.stack.pop() and None))  # None: keep the output
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for owner, fn_name, old in reversed(undo):
            setattr(owner, fn_name, old)


def count_method(method: str, backbone: str, batch: int, size: int, steps: int,
                 autocast: bool, path: str) -> dict:
    """Per-step op counts of ``steps`` warm training steps of ``method``."""
    import speed

    from clinfonce_plugin.host.runtime.backbones import apply_cifar_stem

    n = 4096
    g = torch.Generator().manual_seed(0)
    data = (torch.randint(0, n, (batch,), generator=g),
            [torch.randn(batch, 3, size, size, generator=g) for _ in range(2)],
            torch.randint(0, 30, (batch,), generator=g))
    model, _ = speed.build(method, backbone, batch, n)
    if backbone.startswith("resnet"):
        apply_cifar_stem(getattr(model.backbone, "model", model.backbone))
    # foreach: torch's default on CUDA (one multi-tensor op per update, not one per tensor)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                          foreach=path == "accelerator")
    tracker = Tracker()

    def step(count: bool) -> None:
        modes = (Tagger(tracker), Counting(tracker)) if count else ()
        with contextlib.ExitStack() as stack:
            for mode in modes:
                stack.enter_context(mode)
            with tracker.region("optimizer"):
                opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = model.training_step(data, 0)
            (out["loss"] if isinstance(out, dict) else out).backward()
            with tracker.region("optimizer"):
                opt.step()

    with instrumented(model, tracker, path):
        for _ in range(2):  # warm: momentum buffers exist, lazy state is built
            step(count=False)
        for _ in range(steps):
            step(count=True)
    per = lambda c: {k: v / steps for k, v in sorted(c.items())}  # noqa: E731
    return {"ops": sum(tracker.ops.values()) / steps,
            "kernels": sum(tracker.kernels.values()) / steps,
            "host_reads": tracker.reads / steps,
            "ops_by_region": per(tracker.ops), "kernels_by_region": per(tracker.kernels),
            "op_names": per(tracker.names)}


def table(res: Dict[str, dict]) -> str:
    regions = sorted({r for m in res.values() for r in m["ops_by_region"]},
                     key=lambda r: (r not in SHARED, r))
    head = " | ".join(f"{m} ops (kernels)" for m in res)
    lines = [f"| region | {head} |", "| --- |" + " --- |" * len(res)]
    for r in regions:
        cells = [f"{m['ops_by_region'].get(r, 0):g} ({m['kernels_by_region'].get(r, 0):g})"
                 for m in res.values()]
        lines.append(f"| {r}{' (shared)' if r in SHARED else ''} | " + " | ".join(cells) + " |")
    lines.append("| **total per step** | " + " | ".join(
        f"**{m['ops']:g} ({m['kernels']:g})**" for m in res.values()) + " |")
    lines.append("| host reads per step | " + " | ".join(
        f"{m['host_reads']:g}" for m in res.values()) + " |")
    base = res["simclr"]
    lines.append("| ratio to simclr: ops (kernels) | " + " | ".join(
        f"{m['ops'] / base['ops']:.3f} ({m['kernels'] / base['kernels']:.3f})"
        for m in res.values()) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18", help="timm name (resnet*: CIFAR stem)")
    p.add_argument("--batch", type=int, default=256, help="gpu_check's batch: the number of "
                   "connected-components rounds on the accelerator path depends on it")
    p.add_argument("--size", type=int, default=8, help="crop size; op counts do not depend "
                   "on it (gpu_check: 32)")
    p.add_argument("--steps", type=int, default=2, help="counted steps after 2 warm ones")
    p.add_argument("--no-autocast", action="store_true", help="fp32 (gpu_check: bf16)")
    p.add_argument("--path", choices=["accelerator", "cpu"], default="accelerator")
    p.add_argument("--label", default="current", help="key of this measurement in --out")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "op_count.json"))
    p.add_argument("--quick", action="store_true", help="test_resnet, batch 16, 1 step")
    args = p.parse_args(argv)
    if args.quick:
        args.backbone, args.batch, args.steps = "test_resnet", 16, 1
    torch.manual_seed(0)
    res = {m: count_method(m, args.backbone, args.batch, args.size, args.steps,
                           not args.no_autocast, args.path) for m in METHODS}
    text = table(res)
    setup = (f"{args.backbone}{' (cifar stem)' if args.backbone.startswith('resnet') else ''}"
             f", batch {args.batch}, {args.size} px, bf16 autocast {not args.no_autocast}, "
             f"{args.path} path, {args.steps} counted steps")
    print(f"op counts per training step ({setup})\n\n{text}")
    entry = {"setup": setup, "table": text, "methods": res,
             "clinfonce/simclr ops": res["clinfonce"]["ops"] / res["simclr"]["ops"],
             "wcl/simclr ops": res["wcl"]["ops"] / res["simclr"]["ops"],
             "clinfonce/simclr kernels": res["clinfonce"]["kernels"] / res["simclr"]["kernels"],
             "wcl/simclr kernels": res["wcl"]["kernels"] / res["simclr"]["kernels"]}
    saved = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            saved = json.load(f)
    saved[args.label] = entry
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(saved, f, indent=2)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
