"""Speed of the plugin's methods and losses as ratios to the host's SimCLR, in one process.

Runs alternate (A, B, A, B, ...) and the reported figure is the median of the per-round
ratios, because these machines are noisy (+-15-20 % run to run).

    python bench/speed.py            # full budget
    python bench/speed.py --quick    # smoke run (tiny sizes, 2 rounds)

Sections: (1) training step time of clinfonce, wcl, swav, cluster_ce vs simclr on the same
backbone and batch; (2) loss-only forward+backward of cl_infonce vs the host's NT-Xent at
B = 256 / 1024 / 4096; (3) provider costs: attribute / hierarchy lookup per step, weak-label
generation per step (vs the similarity it needs), k-means refresh per epoch.
"""
import argparse
import json
import math
import os
import sys
from types import SimpleNamespace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clinfonce_plugin import host  # noqa: E402
from clinfonce_plugin.config import saved_pretrain_cfg  # noqa: E402
from clinfonce_plugin.clusters.sample_info import SampleInfo  # noqa: E402
from clinfonce_plugin.losses import cl_infonce  # noqa: E402
from _timing import alternate, timed  # noqa: E402

# (weak labels are measured as a share of a whole WCL step by bench/weak_labels.py)
TARGETS = {"clinfonce step": 1.02, "wcl step": 1.05, "cl_infonce loss": 1.05}


def host_nt_xent():
    """The host's own SimCLR loss function (solo-learn's simclr_loss_func on solo-learn)."""
    if host.HOST_NAME == "solo-learn":
        from solo.losses.simclr import simclr_loss_func

        return lambda z, ids, t: simclr_loss_func(z, indexes=ids, temperature=t)
    from clinfonce_plugin.host.runtime.losses import nt_xent_masked

    return nt_xent_masked


def synthetic_info(n: int) -> SampleInfo:
    rng = np.random.default_rng(0)
    return SampleInfo(num_samples=n, labels=rng.integers(0, 30, n),
                      attributes=rng.integers(0, 2, (n, 31)),
                      attribute_names=[f"a{i}" for i in range(31)],
                      class_names=[f"c{i}" for i in range(30)])


def method_cfg(method: str, backbone: str, batch: int, kwargs: dict):
    base = {"proj_hidden_dim": 256, "proj_output_dim": 128, "temperature": 0.1}
    cfg = {
        "name": "speed", "method": method, "backbone": {"name": backbone, "kwargs": {}},
        "method_kwargs": {**base, **kwargs},
        "data": {"dataset": "synthetic_cub", "train_path": "unused", "num_classes": 30,
                 "num_large_crops": 2, "num_small_crops": 0},
        "optimizer": {"name": "sgd", "batch_size": batch, "lr": 0.1, "classifier_lr": 0.1,
                      "weight_decay": 1e-4, "kwargs": {"momentum": 0.9},
                      "exclude_bias_n_norm_wd": False},
        "scheduler": {"name": "none"}, "max_epochs": 1, "accumulate_grad_batches": 1,
        "knn_eval": {"enabled": False}, "performance": {"disable_channel_last": True},
    }
    # every schema key left out takes its default, as after the config check
    return saved_pretrain_cfg(cfg)


METHOD_KWARGS = {
    "simclr": {},
    "clinfonce": {"clusters": {"provider": "attributes", "k": 6}},
    "wcl": {},
    "swav": {"num_prototypes": 100},
    "cluster_ce": {"clusters": {"provider": "attributes", "k": 6}},
}


def build(method: str, backbone: str, batch: int, n: int):
    kw = dict(METHOD_KWARGS[method])
    cfg = method_cfg(method, backbone, batch, kw)
    cls = host.METHODS[cfg.method]
    if method == "swav":
        del cfg.method_kwargs["temperature"]
        cfg.method_kwargs.temperature = 0.1
    if method == "cluster_ce":
        for key in ("proj_hidden_dim", "proj_output_dim", "temperature"):
            del cfg.method_kwargs[key]
    cfg = cls.add_and_assert_specific_cfg(cfg)
    torch.manual_seed(0)
    model = cls(cfg, sample_info=synthetic_info(n)) if getattr(cls, "uses_sample_info", False) \
        else cls(cfg)
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    # solo-learn's SwAV builds its Sinkhorn-Knopp in on_train_start from trainer.world_size
    model.trainer = SimpleNamespace(world_size=1, current_epoch=0, global_step=0) if host.HOST_NAME == "solo-learn" else None
    model.on_train_start()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, opt


def step_fn(model, opt, batch):
    def run():
        opt.zero_grad(set_to_none=True)
        out = model.training_step(batch, 0)
        (out["loss"] if isinstance(out, dict) else out).backward()
        opt.step()
    return run


def bench_steps(args, backbone: str) -> dict:
    n = 1000
    g = torch.Generator().manual_seed(0)
    batch = (torch.randint(0, n, (args.batch,), generator=g),
             [torch.randn(args.batch, 3, 32, 32, generator=g) for _ in range(2)],
             torch.randint(0, 30, (args.batch,), generator=g))
    fns = {}
    for method in ("simclr", "clinfonce", "wcl", "swav", "cluster_ce"):
        if method not in host.METHODS:
            print(f"[speed] {method} is not registered in the {host.HOST_NAME} host; skipped")
            continue
        model, opt = build(method, backbone, args.batch, n)
        fn = step_fn(model, opt, batch)
        fn()  # warm-up
        fns[method] = fn
    return alternate(fns, args.step_rounds, "simclr")


def bench_losses(args) -> dict:
    nt = host_nt_xent()
    out = {}
    for b in args.loss_batches:
        g = torch.Generator().manual_seed(b)
        z = torch.randn(2 * b, 256, generator=g, requires_grad=True)
        inst = torch.arange(b).repeat(2)
        clusters = torch.randint(0, max(2, b // 8), (b,), generator=g).repeat(2)

        def run(loss):
            def f():
                z.grad = None
                loss().backward()
            return f

        fns = {"nt_xent": run(lambda: nt(z, inst, 0.1)),
               "cl_infonce (instance ids)": run(lambda: cl_infonce(z, inst, 0.1)),
               "cl_infonce (clusters, out)": run(lambda: cl_infonce(z, clusters, 0.1)),
               "cl_infonce (clusters, in)": run(lambda: cl_infonce(z, clusters, 0.1, form="in"))}
        for f in fns.values():
            f()
        rounds = args.rounds if b < 4096 else max(3, args.rounds // 3)
        out[b] = alternate(fns, rounds, "nt_xent")
    return out


def bench_providers(args, step_s=None) -> dict:
    from clinfonce_plugin.clusters.registry import build_provider

    n = 50_000 if not args.quick else 2_000
    info = synthetic_info(n)
    info.class_names = [f"c{i}" for i in range(30)]
    pairs = [["root", f"g{i % 5}"] for i in range(5)] + [[f"g{i % 5}", f"c{i}"] for i in range(30)]
    idx = torch.randint(0, n, (args.batch,))
    res = {}
    for name, params in (("attributes", {"k": 6}), ("hierarchy", {"pairs": pairs, "level": 2})):
        prov = build_provider(name, info, **params)
        prov(idx)
        reps = 200
        res[f"{name} lookup per step (ms)"] = 1e3 * timed(
            lambda: [prov(idx) for _ in range(reps)]) / reps
    # k-means refresh (one per epoch at period 1): embedding pass + k-means + I/H, as a
    # fraction of a simclr epoch over the same N images at the step time measured above
    import kmeans_refresh

    sizes = kmeans_refresh.QUICK_SIZES[:1] if args.quick else [(50_000, 128, 1_000)]
    for row in kmeans_refresh.refresh_times(sizes, repeats=1, workers=0):
        tag = f"k-means refresh N={row['N']} d={row['d']} k={row['k']}"
        res[f"{tag}: k-means alone (s)"] = row["kmeans"]
        res[f"{tag}: whole refresh (s)"] = row["total"]
        if step_s is not None:
            epoch_s = math.ceil(row["N"] / args.batch) * step_s
            res[f"{tag}: whole refresh / simclr epoch ({args.backbones[0]})"] = \
                row["total"] / epoch_s

    from clinfonce_plugin.clusters.components import components_torch, nearest_neighbour

    for b in args.wl_batches:
        # one WCL step: each of the two views has its own 1-NN search (the similarity weak
        # labels need); the labelling of both graphs is one call on their disjoint union
        # (clusters.components.weak_labels_of_views), and that is what weak labels add
        v1, v2 = (F.normalize(torch.randn(b, 256), dim=1) for _ in range(2))
        union = torch.cat([nearest_neighbour(v1, v1), nearest_neighbour(v2, v2) + b])
        r = alternate({"similarity": lambda: (nearest_neighbour(v1, v1),
                                              nearest_neighbour(v2, v2)),
                       "labelling": lambda: components_torch(union, validate=False)},
                      args.rounds, "similarity")
        res[f"weak labels B={b}, 2 views: similarity+top1 (ms)"] = \
            1e3 * r["similarity"]["median_s"]
        res[f"weak labels B={b}, 2 views: labelling adds (fraction of similarity)"] = \
            r["labelling"]["median_ratio"]
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["test_resnet", "resnet18d"],
                   help="training-step section: one table per backbone (test_resnet is the "
                        "quality benchmark's, resnet18d has the paper's ResNet-18 widths)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--step-rounds", type=int, default=25)
    p.add_argument("--rounds", type=int, default=15, help="rounds of the loss and provider "
                                                          "sections (a third of it at B=4096)")
    p.add_argument("--loss-batches", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--wl-batches", type=int, nargs="+", default=[512, 2048, 8192])
    p.add_argument("--out", default=os.path.join(REPO, "bench/results/speed.json"))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.rounds, args.loss_batches, args.wl_batches = 16, 2, [64], [128]
        args.step_rounds, args.backbones = 2, args.backbones[:1]
    torch.set_num_threads(max(1, torch.get_num_threads()))

    print(f"[speed] host={host.HOST_NAME} backbones={args.backbones} batch={args.batch} "
          f"step rounds={args.step_rounds} rounds={args.rounds} "
          f"threads={torch.get_num_threads()}", flush=True)
    steps = {bb: bench_steps(args, bb) for bb in args.backbones}
    losses = bench_losses(args)
    providers = bench_providers(
        args, steps[args.backbones[0]].get("simclr", {}).get("median_s"))

    lines = [f"| training step, batch {args.batch}, {args.step_rounds} rounds | "
             + " | ".join(f"{bb} s | {bb} ratio" for bb in steps) + " |",
             "| --- |" + " --- | --- |" * len(steps)]
    for name in next(iter(steps.values())):
        cells = [f"{r[name]['median_s']:.3f} | {r[name]['median_ratio']:.3f}"
                 for r in steps.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| loss fwd+bwd, z = (2B, 256) | " + " | ".join(
        f"B={b}" for b in losses) + " |", "| --- |" + " --- |" * len(losses)]
    for name in next(iter(losses.values())):
        cells = []
        for b, r in losses.items():
            cells.append(f"{r[name]['median_s'] * 1e3:.1f} ms" if name == "nt_xent"
                         else f"{r[name]['median_ratio']:.3f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| provider cost | value |", "| --- | --- |"]
    for name, v in providers.items():
        lines.append(f"| {name} | {v:.4f} |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"host": host.HOST_NAME, "steps": steps,
                   "losses": {str(b): r for b, r in losses.items()}, "providers": providers,
                   "targets": TARGETS, "table": table}, f, indent=2)
    return {"steps": steps, "losses": losses, "providers": providers}


if __name__ == "__main__":
    main()
