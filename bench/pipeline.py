"""Images per second per core of the data pipelines, as ratios to the JPEG decode alone, in
one process; plus the synthetic CUB demo epoch split into data wait and compute.

    python bench/pipeline.py                        # full budget
    python bench/pipeline.py --quick                # smoke run (few images, 2 rounds)
    python bench/pipeline.py --baseline /work/main  # adds the runtime pipeline of another
                                                    # checkout (before / after a change)

Run it with the Python of an environment where solo-learn is installed to get row (b).

Rows, each a pass over the same files in one single-threaded process (so images/s is per
core), every image decoded and then given all the crops of its yaml (two views):

- 224 px: ``augmentations/symmetric_224.yaml`` on photo-like 500x375 JPEGs this script writes
  to a temporary directory (smooth colour fields, shapes and sensor-like noise, ~70 kB each);
- 32 px: ``augmentations/symmetric_32.yaml`` on the synthetic CUB's 32x32 JPEGs (generated
  into the same temporary directory).

(a) the bundled runtime's CPU path (``host.runtime.augmentations.build_transform_pipeline``);
(a0) with ``--baseline DIR``: the same module from another checkout (e.g. main before a change);
(b) solo-learn's own pipeline (``solo.data.pretrain_dataloader``) when it is importable;
(c) the device path's worker share (``augment.worker.build_worker_transform``: the decode
    and random-resized crops to uint8; the random ops then run batched in the training process);
(d) the JPEG decode alone (``data.images.load_rgb``).

Timing alternates the rows round by round (bench/_timing.py): the figure of a row is its
median seconds per pass; its cost relative to (d) is the median over rounds of its time / the
decode's time in the same round.

The epoch split runs the demo config ``clinfonce_synthetic_cub.yaml`` (its workers, batch and
backbone) on the default synthetic CUB: per epoch, ``data wait`` is the time the training loop
spends between the end of one step and the start of the next (fetching batches from the
workers, the copy to the device, Lightning's bookkeeping), ``compute`` the time inside the
steps (forward, backward, optimiser), and ``loader alone`` one epoch of the same DataLoader
without training. The first epoch (worker start-up) is left out of the medians; with
``--baseline`` the demo also runs with the baseline's runtime pipeline, the runs alternated.
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import lightning.pytorch as pl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from _timing import alternate  # noqa: E402
from clinfonce_plugin import host  # noqa: E402
from clinfonce_plugin.config import AUGMENTATION, available_cores, fill_section  # noqa: E402
from clinfonce_plugin.data.images import load_rgb  # noqa: E402
from clinfonce_plugin.host.runtime import augmentations as runtime_aug  # noqa: E402

AUG_DIR = os.path.join(REPO, "scripts", "pretrain", "augmentations")
SIZES = {"224": "symmetric_224.yaml", "32": "symmetric_32.yaml"}
DEMO_CONFIG = "clinfonce_synthetic_cub.yaml"


# --------------------------------------------------------------------------- data
def photo_like(rng: np.random.Generator, width: int = 500, height: int = 375) -> Image.Image:
    """A smooth colour field with a dozen shapes, a slight blur and sensor-like noise: the
    entropy of a photo (a JPEG of ~70 kB at quality 90), unlike a flat colour."""
    img = Image.fromarray(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)).resize(
        (width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 150))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(1.5))
    noisy = np.asarray(img).astype(np.int16) + rng.normal(0, 12, (height, width, 3)).astype(
        np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_photos(folder: str, count: int, seed: int = 0) -> List[str]:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        path = os.path.join(folder, f"{i:04d}.jpg")
        photo_like(rng).save(path, quality=90)
        files.append(path)
    return files


def synthetic_cub_files(root: str) -> List[str]:
    """The training images of the default synthetic CUB at ``root`` (generated if absent)."""
    from clinfonce_plugin.data.registry import DATASETS
    from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

    generate_synthetic_cub(root)
    dataset, _, _ = DATASETS["synthetic_cub"](root, "train")
    return list(dataset.files)


# --------------------------------------------------------------------------- pipelines
def aug_nodes(yaml_name: str):
    """The checked pipeline nodes of an augmentation yaml (every key filled)."""
    cfg = OmegaConf.create({"augmentations": OmegaConf.load(os.path.join(AUG_DIR, yaml_name))})
    for i in range(len(cfg.augmentations)):
        fill_section(cfg, f"augmentations[{i}]", AUGMENTATION)
    return cfg.augmentations


def full_pipeline(module, nodes, dataset: str = "custom") -> Callable:
    """image -> all crops of ``nodes`` with a module that has solo-learn's three names."""
    return module.FullTransformPipeline([
        module.NCropAugmentation(module.build_transform_pipeline(dataset, node), node.num_crops)
        for node in nodes])


def load_module(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def solo_module():
    """solo-learn's pretrain_dataloader module, or None with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import solo.data.pretrain_dataloader as solo_data
    except ImportError as err:
        return None, f"solo-learn is not importable ({err})"
    return solo_data, None


# ----------------------------------------------------------------- row (c)
def device_worker_transform(nodes) -> Optional[Callable]:
    """Row (c), the device path's worker share: the per-image transform a data-loader worker
    runs with ``data.augment_on: device`` (the random-resized crop of every crop of
    ``nodes`` -> uint8 tensors; the decode happens before it, as in every row)."""
    from clinfonce_plugin.augment.worker import build_worker_transform

    return full_pipeline(SimpleNamespace(
        FullTransformPipeline=runtime_aug.FullTransformPipeline,
        NCropAugmentation=runtime_aug.NCropAugmentation,
        build_transform_pipeline=build_worker_transform), nodes)


def per_image(files: List[str], transform: Optional[Callable]) -> Callable[[], None]:
    """One pass over ``files``: decode each, then ``transform`` it (None: decode only)."""
    def run():
        for path in files:
            image = load_rgb(path)
            if transform is not None:
                transform(image)
    return run


def measure_rows(files: List[str], rows: Dict[str, Optional[Callable]], rounds: int
                 ) -> Dict[str, dict]:
    """images/s (one thread) of each row and its cost relative to the decode row (d)."""
    fns = {name: per_image(files, transform) for name, transform in rows.items()}
    fns["(d) decode"] = per_image(files, None)
    for fn in fns.values():
        fn()  # warm-up: file cache, lazy imports
    timed = alternate(fns, rounds, baseline="(d) decode")
    return {name: {"images_per_s": len(files) / r["median_s"],
                   "cost_vs_decode": r["median_ratio"],
                   "speed_vs_decode": 1.0 / r["median_ratio"]} for name, r in timed.items()}


def pipeline_rows(size: str, files: List[str], rounds: int, baseline: Optional[str],
                  skipped: List[str]) -> Dict[str, dict]:
    nodes = aug_nodes(SIZES[size])
    rows: Dict[str, Optional[Callable]] = {"(a) runtime": full_pipeline(runtime_aug, nodes)}
    if baseline:
        old = load_module("baseline_augmentations", os.path.join(
            baseline, "clinfonce_plugin", "host", "runtime", "augmentations.py"))
        rows["(a0) runtime at baseline"] = full_pipeline(old, nodes)
    solo_data, why = solo_module()
    if solo_data is not None:
        rows["(b) solo-learn"] = full_pipeline(solo_data, nodes)
    else:
        skipped.append(f"{size} px (b) solo-learn: skipped, {why}")
    worker = device_worker_transform(nodes)
    if worker is not None:
        rows["(c) device path, worker share"] = worker
    else:
        skipped.append(f"{size} px (c) device path worker share: skipped")
    return measure_rows(files, rows, rounds)


# --------------------------------------------------------------------------- epoch split
class StepTimer(pl.Callback):
    """Per epoch: seconds between steps (data wait), inside steps (compute), and in all."""

    def __init__(self) -> None:
        self.wait: List[float] = []
        self.compute: List[float] = []
        self.epoch: List[float] = []
        self._mark = self._start = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start = self._mark = time.perf_counter()
        self.wait.append(0.0)
        self.compute.append(0.0)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.wait[-1] += now - self._mark
        self._mark = now

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.compute[-1] += now - self._mark
        self._mark = now

    def on_train_epoch_end(self, trainer, module) -> None:
        self.epoch.append(time.perf_counter() - self._start)


def demo_cfg(root: str, out_dir: str, epochs: int, workers: Optional[int], extra=()):
    from hydra import compose, initialize_config_dir

    overrides = [f"data.train_path={root}", f"max_epochs={epochs}", "checkpoint.enabled=false",
                 f"checkpoint.dir={out_dir}", "+enable_progress_bar=false", "+overwrite=true",
                 *extra]
    if workers is not None:
        overrides.append(f"data.num_workers={workers}")
    with initialize_config_dir(config_dir=os.path.join(REPO, "scripts", "pretrain"),
                               version_base="1.2"):
        return compose(config_name=DEMO_CONFIG, overrides=overrides)


def loader_epoch_seconds(cfg, epochs: int) -> List[float]:
    """Seconds of each epoch of the demo's training DataLoader alone (persistent workers)."""
    from torch.utils.data import DataLoader

    from clinfonce_plugin.data.indexed import IndexedDataset
    from clinfonce_plugin.data.registry import open_split
    from clinfonce_plugin.run.pretrain import prepare_cfg, pretrain_transform

    cfg = prepare_cfg(cfg)
    train = open_split(cfg.data, "train")
    workers = int(cfg.data.num_workers)
    loader = DataLoader(IndexedDataset(train.dataset, pretrain_transform(cfg)),
                        batch_size=cfg.optimizer.batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _batch in loader:
            pass
        seconds.append(time.perf_counter() - start)
    return seconds


def epoch_split(root: str, work: str, epochs: int, workers: Optional[int],
                pipeline_builder: Optional[Callable] = None, extra=()) -> dict:
    """The demo run's per-epoch wait / compute (medians over epochs after the first), with
    the runtime's ``build_transform_pipeline`` replaced by ``pipeline_builder`` if given and
    the config ``extra`` overrides (e.g. ``data.augment_on=device``)."""
    from clinfonce_plugin.run.pretrain import pretrain

    saved = host.build_transform_pipeline
    if pipeline_builder is not None:
        host.build_transform_pipeline = pipeline_builder
    try:
        timer = StepTimer()
        cfg = demo_cfg(root, work, epochs, workers, extra)
        pretrain(cfg, callbacks=[timer])
        loader = loader_epoch_seconds(demo_cfg(root, work, epochs, workers, extra), epochs)
    finally:
        host.build_transform_pipeline = saved
    later = slice(1, None) if epochs > 1 else slice(None)
    med = lambda xs: statistics.median(xs[later])  # noqa: E731
    return {"epoch_s": med(timer.epoch), "data_wait_s": med(timer.wait),
            "compute_s": med(timer.compute), "loader_alone_s": med(loader),
            "per_epoch": {"epoch_s": timer.epoch, "data_wait_s": timer.wait,
                          "compute_s": timer.compute, "loader_alone_s": loader}}


# --------------------------------------------------------------------------- report
def table(results: dict) -> str:
    lines = ["| pipeline | 224 px images/s per core | cost vs decode | 32 px images/s per core "
             "| cost vs decode |", "| --- | --- | --- | --- | --- |"]
    names = list(dict.fromkeys(n for size in SIZES for n in results["rows"][size]))
    for name in names:
        cells = []
        for size in SIZES:
            row = results["rows"][size].get(name)
            cells += ["skipped", "-"] if row is None else [
                f"{row['images_per_s']:.0f}", f"{row['cost_vs_decode']:.2f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if results.get("epochs"):
        lines += ["", "| synthetic CUB demo epoch | epoch s | data wait s | compute s | "
                  "loader alone s |", "| --- | --- | --- | --- | --- |"]
        for name, e in results["epochs"].items():
            lines.append(f"| {name} | {e['epoch_s']:.2f} | {e['data_wait_s']:.2f} | "
                         f"{e['compute_s']:.2f} | {e['loader_alone_s']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=None, help="500x375 JPEGs of the 224 px rows "
                   "(default 48; --quick 6)")
    p.add_argument("--cub-images", type=int, default=None, help="synthetic CUB images of the "
                   "32 px rows (default 300; --quick 24)")
    p.add_argument("--rounds", type=int, default=None, help="default 7; --quick 2")
    p.add_argument("--epochs", type=int, default=None, help="demo epochs per run, 0: no "
                   "split (default 3; --quick 2)")
    p.add_argument("--epoch-runs", type=int, default=None, help="demo runs per variant, "
                   "alternated; medians over runs (default 2; --quick 1)")
    p.add_argument("--train-threads", type=int, default=None, help="torch threads of the demo's "
                   "training process (default: torch's, one per core); 1 keeps a shared "
                   "machine's OpenMP threads from waiting on each other")
    p.add_argument("--workers", type=int, default=None, help="demo data.num_workers (default: "
                   "the demo config's)")
    p.add_argument("--baseline", default=None, help="a checkout whose runtime pipeline is "
                   "measured too, as row (a0) and a second demo run")
    p.add_argument("--work-dir", default=None, help="where the images and runs go (default: "
                   "a temporary directory, removed afterwards)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "pipeline.json"))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    budget = {"photos": (48, 6), "cub_images": (300, 24), "rounds": (7, 2), "epochs": (3, 2),
              "epoch_runs": (2, 1)}
    for key, (full, quick) in budget.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or tmp
        photos = write_photos(os.path.join(work, "photos"), args.photos)
        cub_root = os.path.join(work, "synthetic_cub")
        cub = synthetic_cub_files(cub_root)[: args.cub_images]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one core per row
        skipped: List[str] = []
        try:
            rows = {"224": pipeline_rows("224", photos, args.rounds, args.baseline, skipped),
                    "32": pipeline_rows("32", cub, args.rounds, args.baseline, skipped)}
        finally:
            torch.set_num_threads(threads)
        epochs = {}
        if args.train_threads:
            torch.set_num_threads(args.train_threads)
        if args.epochs:
            variants = {f"{host.HOST_NAME} (this checkout), augment_on cpu": (None, ()),
                        f"{host.HOST_NAME} (this checkout), augment_on device":
                            (None, ("++data.augment_on=device",))}
            if args.baseline and host.HOST_NAME == "runtime":
                old = load_module("baseline_augmentations_epoch", os.path.join(
                    args.baseline, "clinfonce_plugin", "host", "runtime", "augmentations.py"))
                variants = {"runtime at baseline, augment_on cpu":
                            (old.build_transform_pipeline, ()), **variants}
            runs: Dict[str, List[dict]] = {name: [] for name in variants}
            for r in range(args.epoch_runs):
                names = list(variants)[r % len(variants):] + list(variants)[:r % len(variants)]
                for name in names:  # alternated, as the rows
                    runs[name].append(epoch_split(cub_root, os.path.join(work, f"runs-{r}"),
                                                  args.epochs, args.workers, *variants[name]))
            keys = ("epoch_s", "data_wait_s", "compute_s", "loader_alone_s")
            epochs = {name: {**{k: statistics.median(run[k] for run in rs) for k in keys},
                             "runs": rs} for name, rs in runs.items()}

    results = {
        "host": host.HOST_NAME, "cores_available": available_cores(),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "pillow": Image.__version__, "baseline": args.baseline, "rounds": args.rounds,
        "files": {"224": len(photos), "32": len(cub)}, "rows": rows, "skipped": skipped,
        "train_threads": torch.get_num_threads(), "epochs": epochs,
    }
    results["table"] = table(results)
    print(results["table"])
    for line in skipped:
        print(line)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"-> {args.out}")
    return results


if __name__ == "__main__":
    main()
