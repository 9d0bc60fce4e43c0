"""Cost of the k-means refresh of clinfonce + kmeans (Cl-InfoNCE Sec. 4.4, Algorithm 1).

    python bench/kmeans_refresh.py            # the measurements of the closing note
    python bench/kmeans_refresh.py --quick    # tiny smoke budget (the test runs this)

1. Refresh time for N=50,000, d=128, k=1,000 and N=128,000, d=128, k=2,500:
   * k-means alone (``spherical_kmeans``, 20 iterations) on random L2-normalised data;
   * the whole refresh of the method (``ClInfoNCE.refresh_clusters``): embedding pass of N
     generated 32x32 images through test_resnet + projector (d = 128), k-means on its
     output, and I(Z;T) / H(Z|T) from the same assignments. Images are generated in memory
     (no JPEG decoding): on real data the pass also pays the decoding and resizing.
2. Whole-epoch time with and without refresh: clinfonce_kmeans_synthetic_cub.yaml (test_resnet,
   900 training images, one process), alternating runs with period 1 (refresh before every
   epoch) and period 10**9 (only the initial clustering before epoch 0). Epoch 0 is left
   out of the medians (both runs cluster there, and it pays the warm-up).

Timings are wall-clock medians; these machines have about +-15-20 % run-to-run noise.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import lightning.pytorch as pl
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

FULL_SIZES = [(50_000, 128, 1_000), (128_000, 128, 2_500)]
QUICK_SIZES = [(300, 8, 5), (600, 8, 10)]


class GeneratedImages(torch.utils.data.Dataset):
    """N distinct 32x32 images, image i a function of i only (seeded), made on access."""

    def __init__(self, n: int, num_classes: int = 100) -> None:
        self.n, self.num_classes = n, num_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(int(i))
        return torch.rand(3, 32, 32, generator=g), int(i) % self.num_classes


def _method_cfg(d: int, k: int, batch_size: int, workers: int):
    from clinfonce_plugin.config import saved_pretrain_cfg

    # every schema key left out takes its default, as after the config check
    return saved_pretrain_cfg({
        "name": "bench", "method": "clinfonce",
        "backbone": {"name": "test_resnet", "kwargs": {}},
        "method_kwargs": {"proj_hidden_dim": 2048, "proj_output_dim": d, "temperature": 0.1,
                          "clusters": {"provider": "kmeans", "k": k}},
        "data": {"dataset": "synthetic_cub", "train_path": "unused", "num_classes": 100,
                 "num_large_crops": 2, "num_small_crops": 0, "num_workers": workers},
        "optimizer": {"name": "sgd", "batch_size": batch_size, "lr": 0.1, "classifier_lr": 0.1,
                      "weight_decay": 0.0, "kwargs": {"momentum": 0.9},
                      "exclude_bias_n_norm_wd": False},
        "scheduler": {"name": "none"}, "max_epochs": 1, "accumulate_grad_batches": 1,
    })


def refresh_times(sizes, repeats: int, workers: int) -> List[Dict[str, float]]:
    from clinfonce_plugin import host
    from clinfonce_plugin.clusters.kmeans import spherical_kmeans
    from clinfonce_plugin.clusters.sample_info import SampleInfo

    rows = []
    for n, d, k in sizes:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, d)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        kmeans = []
        for _ in range(repeats):
            start = time.perf_counter()
            spherical_kmeans(x, k, iterations=20, seed=0)
            kmeans.append(time.perf_counter() - start)
        del x

        torch.manual_seed(0)
        labels = np.arange(n) % 100
        model = host.METHODS["clinfonce"](_method_cfg(d, k, 256, workers),
                                          sample_info=SampleInfo(num_samples=n, labels=labels))
        model.embedding_dataset = GeneratedImages(n)
        passes, fits, totals = [], [], []
        for _ in range(repeats):
            model.refresh_clusters(0)
            last = model.last_refresh
            passes.append(last["embed_seconds"])
            fits.append(last["fit_seconds"])
            totals.append(last["kmeans_refresh_seconds"])
        rows.append({"N": n, "d": d, "k": k, "kmeans": statistics.median(kmeans),
                     "pass": statistics.median(passes), "fit": statistics.median(fits),
                     "total": statistics.median(totals)})
    return rows


class EpochTimer(pl.Callback):
    """Lightning callback: wall time of each training epoch, refresh included (callbacks'
    on_train_epoch_start runs before the module's, where the refresh happens)."""

    def __init__(self) -> None:
        self.seconds: List[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def _epoch_run(root: str, period: int, epochs: int, batch_size: int, workers: int, k: int):
    from hydra import compose, initialize_config_dir
    from torch.utils.data import DataLoader

    from clinfonce_plugin.data.indexed import IndexedDataset, TransformedImages
    from clinfonce_plugin.data.registry import build_dataset
    from clinfonce_plugin.data.transforms import eval_transform
    from clinfonce_plugin.run.lightning_noise import lightning_noise_filtered
    from clinfonce_plugin.run.pretrain import build_method, prepare_cfg, pretrain_transform

    with initialize_config_dir(config_dir=os.path.join(REPO, "scripts", "pretrain"),
                               version_base="1.2"):
        cfg = compose(config_name="clinfonce_kmeans_synthetic_cub.yaml", overrides=[
            f"data.train_path={root}", f"data.num_workers={workers}",
            f"optimizer.batch_size={batch_size}", f"max_epochs={epochs}",
            f"method_kwargs.clusters.period={period}", f"method_kwargs.clusters.k={k}",
            "checkpoint.enabled=false"])
    cfg = prepare_cfg(cfg)
    pl.seed_everything(cfg.get("seed") or 0)
    base, info, _ = build_dataset(cfg.data.dataset, cfg.data.train_path, split="train")
    model = build_method(cfg, sample_info=info)
    # as the runner does: the refresh embeds the split read above (deterministic transform)
    model.embedding_dataset = TransformedImages(base, eval_transform(cfg))
    loader = DataLoader(IndexedDataset(base, pretrain_transform(cfg)), batch_size=batch_size,
                        shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer])
    refreshes: List[float] = []
    refresh = model.refresh_clusters

    def timed_refresh(epoch):
        out = refresh(epoch)
        refreshes.append(out["kmeans_refresh_seconds"])
        return out

    model.refresh_clusters = timed_refresh
    with lightning_noise_filtered():  # as the real jobs run it
        trainer.fit(model, loader)
    return timer.seconds, refreshes


def epoch_ratio(root: str, epochs: int, repeats: int, batch_size: int, workers: int, k: int):
    runs = {"with": ([], []), "without": ([], [])}
    for _ in range(repeats):  # alternate the two runs so drifts in machine load hit both
        for key, period in (("with", 1), ("without", 10**9)):
            seconds, refreshes = _epoch_run(root, period, epochs, batch_size, workers, k)
            runs[key][0].extend(seconds[1:])  # epoch 0: both cluster, plus warm-up
            runs[key][1].extend(refreshes[1:] if key == "with" else [])
    return runs


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke budget")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run of the epoch-ratio part (epoch 0 is not counted)")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    repeats = args.repeats or (1 if args.quick else 2)
    epochs = args.epochs or (2 if args.quick else 4)
    workers = 0 if args.quick else 2

    print(f"# k-means refresh, torch threads {torch.get_num_threads()}, "
          f"{'quick' if args.quick else 'full'} budget, medians of {repeats}")
    print()
    print("| N | d | k | k-means [s] | pass + k-means [s] | pass [s] | k-means in refresh [s] |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in refresh_times(sizes, repeats, workers):
        print(f"| {r['N']} | {r['d']} | {r['k']} | {_fmt(r['kmeans'])} | {_fmt(r['total'])} "
              f"| {_fmt(r['pass'])} | {_fmt(r['fit'])} |")
    print()
    print("k-means: 20 iterations on random unit vectors. pass + k-means: the method's whole "
          "refresh (test_resnet + projector on generated 32x32 images, k-means, I/H metrics).")
    print()

    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

            root = os.path.join(tmp, "synthetic_cub")
            generate_synthetic_cub(root, seed=0, num_classes=6, images_per_class=12)
            batch_size, k = 12, 5
        else:
            root = os.path.join(REPO, "datasets", "synthetic_cub")  # generated on first use
            batch_size, k = 128, 40  # the config's values
        runs = epoch_ratio(root, epochs, repeats, batch_size, workers, k)
    with_refresh = statistics.median(runs["with"][0])
    without = statistics.median(runs["without"][0])
    refresh = statistics.median(runs["with"][1]) if runs["with"][1] else 0.0
    print(f"# whole epochs on synthetic CUB (test_resnet, batch {batch_size}, one process, "
          f"{epochs - 1} measured epochs x {repeats} runs each)")
    print()
    print("| run | epochs | epoch [s] (median) | refresh [s] (median) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| with refresh (period 1) | {len(runs['with'][0])} | {_fmt(with_refresh)} | {_fmt(refresh)} |")
    print(f"| without refresh | {len(runs['without'][0])} | {_fmt(without)} | - |")
    print()
    print(f"epoch time ratio with / without refresh: {with_refresh / without:.2f}")


if __name__ == "__main__":
    main()
