"""Training-step time of ``wcl`` vs the host's ``simclr`` on the same backbone and batch, as
a ratio measured in one process (the WCL paper reports 1.01x SimCLR's GPU time).

One step = forward of all crops + loss + backward + SGD step, on random 32x32 inputs. The
methods alternate (the order rotated every round) and the reported figure is the median of
the per-round ratios, because these machines are noisy (+-15-20 % run to run).

    python bench/wcl_step.py                      # full: test_resnet, batch 128, 15 rounds
    python bench/wcl_step.py --quick              # smoke: batch 16, 2 rounds
    python bench/wcl_step.py --backbone resnet18  # any timm backbone
    python bench/wcl_step.py --json out.json      # also write the figures as JSON

Rows: ``wcl`` (two heads, L_NCE + L_swap, 2 views: the paper's comparison) and
``wcl+multicrop`` (plus ``--small-crops`` 16x16 small crops and their two terms; standard
multi-crop inputs, the KNN choice of images costs nothing in the step itself).
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from clinfonce_plugin import host  # noqa: E402
from clinfonce_plugin.config import saved_pretrain_cfg  # noqa: E402
from clinfonce_plugin.clusters.sample_info import SampleInfo  # noqa: E402
from _timing import alternate  # noqa: E402


def _aug(crop_size: int, num_crops: int) -> dict:
    return {"crop_size": crop_size, "num_crops": num_crops}


def make_cfg(method: str, backbone: str, batch: int, small: int, hidden: int) -> DictConfig:
    augs = [_aug(32, 2)] + ([_aug(16, small)] if small else [])
    kwargs = {"proj_hidden_dim": hidden, "proj_output_dim": 128, "temperature": 0.1}
    if method == "wcl":
        kwargs["knn_multicrop"] = False  # the step is the same; no dataset here
    # every schema key left out takes its default, as after the config check
    return saved_pretrain_cfg({
        "name": f"{method}-bench", "method": method,
        "backbone": {"name": backbone, "kwargs": {}},
        "method_kwargs": kwargs,
        "data": {"dataset": "synthetic_cub", "train_path": "unused", "num_classes": 10,
                 "num_large_crops": 2, "num_small_crops": small, "num_workers": 0},
        "optimizer": {"name": "sgd", "batch_size": batch, "lr": 0.1, "classifier_lr": 0.1,
                      "weight_decay": 1e-4, "kwargs": {"momentum": 0.9},
                      "exclude_bias_n_norm_wd": False},
        "scheduler": {"name": "none"}, "max_epochs": 1, "accumulate_grad_batches": 1,
        "augmentations": augs,
    })


def build_model(method: str, backbone: str, batch: int, small: int, hidden: int):
    """(model in train mode with logging switched off, its SGD optimiser, one fixed batch of
    random crops)."""
    cfg = make_cfg(method, backbone, batch, small, hidden)
    cls = host.METHODS[method]
    torch.manual_seed(0)
    if getattr(cls, "uses_sample_info", False):
        model = cls(cfg, sample_info=SampleInfo(num_samples=batch))
    else:
        model = cls(cfg)
    model.log = model.log_dict = lambda *a, **k: None
    model.train()
    opt = torch.optim.SGD([p for g in model.learnable_params for p in g["params"]], lr=0.01,
                          momentum=0.9)
    g = torch.Generator().manual_seed(1)
    crops = [torch.randn(batch, 3, 32, 32, generator=g) for _ in range(2)]
    crops += [torch.randn(batch, 3, 16, 16, generator=g) for _ in range(small)]
    data = (torch.arange(batch), crops, torch.arange(batch) % 10)
    return model, opt, data


def make_step(model, opt, data):
    """One optimizer step of ``model`` on ``data``, as a function of no argument."""
    def step():
        opt.zero_grad(set_to_none=True)
        out = model.training_step(data, 0)
        loss = out["loss"] if isinstance(out, dict) else out
        loss.backward()
        opt.step()

    return step


def build(method: str, backbone: str, batch: int, small: int, hidden: int):
    """One optimizer step of ``method`` on a fixed batch, as a function of no argument."""
    return make_step(*build_model(method, backbone, batch, small, hidden))


def run(backbone: str, batch: int, small: int, hidden: int, rounds: int, warmup: int) -> dict:
    steps = {"simclr": build("simclr", backbone, batch, 0, hidden),
             "wcl": build("wcl", backbone, batch, 0, hidden)}
    if small:
        steps["wcl+multicrop"] = build("wcl", backbone, batch, small, hidden)
    for step in steps.values():
        for _ in range(warmup):
            step()
    timing = alternate(steps, rounds, "simclr")
    return {
        "benchmark": "wcl_step", "host": host.HOST_NAME, "backbone": backbone,
        "batch": batch, "small_crops": small, "proj_hidden_dim": hidden, "rounds": rounds,
        "torch_threads": torch.get_num_threads(), "device": "cpu",
        "median_seconds": {n: t["median_s"] for n, t in timing.items()},
        "median_ratio_to_simclr": {n: t["median_ratio"] for n, t in timing.items()
                                   if n != "simclr"},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 16, 2 rounds")
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--small-crops", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=2048, help="proj_hidden_dim of every head")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (16 if args.quick else 128)
    rounds = args.rounds or (2 if args.quick else 15)
    res = run(args.backbone, batch, args.small_crops, args.hidden, rounds,
              warmup=1 if args.quick else 3)
    print(f"training step, {args.backbone}, batch {batch}, heads feats-{args.hidden}-128, "
          f"{rounds} alternating rounds, medians ({res['torch_threads']} torch threads, CPU, "
          f"host {res['host']})")
    for name, sec in res["median_seconds"].items():
        ratio = res["median_ratio_to_simclr"].get(name)
        extra = f"  {ratio:.3f}x simclr" if ratio is not None else ""
        print(f"  {name:<14} {sec:8.4f} s/step{extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
