"""One command that checks the project on a GPU and measures what matters there.

    python bench/gpu_check.py                 # on a machine with a CUDA GPU, under 4 minutes
    python bench/gpu_check.py --quick         # a short pass of every check (also on a CPU)

It prints one table and writes JSON (``--out``, default bench/results/gpu_check.json):

1. the environment: torch, its CUDA, the GPU, faiss (and whether it has GPU support);
2. the README's main job with ``accelerator=gpu``: pretrain + linear evaluation of
   ``clinfonce_synthetic_cub_bench.yaml`` (entry points run as subprocesses, as a user runs
   them), with its linear and kNN top-1;
3. ``data.augment_on=device`` in fp32 (``32-true``) and bf16 (``bf16-mixed``), a few epochs;
4. a k-means refresh on the GPU (``clinfonce_kmeans_synthetic_cub.yaml``): whether faiss ran
   on the GPU or fell back to the CPU (its one-line notice);
5. WCL (``wcl_synthetic_cub.yaml`` with the KNN multi-crop table built after epoch 1);
   runs 2 to 5 are correctness checks: they run at the same time (``--jobs``), so their
   seconds are those of a shared GPU and CPU, and nothing is timed while they run;
6. training-step time ratios clinfonce / simclr and wcl / simclr at the two realistic
   sizes: the paper's CIFAR-stem ResNet-18 at 32 px, and ResNet-18 at 224 px (channels-last),
   batch 256, bf16 autocast, synthetic tensors on the GPU (the loader does not count); runs
   alternate, the ratio is the median of per-round ratios (targets at each size: 1.02 and
   1.05);
7. the bench run's throughput (training images/s, epochs after the first) and GPU
   utilisation (NVML, sampled every 50 ms during those epochs) with the CPU augmentation and
   with ``data.augment_on=device`` (target: device >= 2x the CPU path's images/s).

A check that fails is reported as FAIL with its error line; the others still run. The exit
code is 1 when a check failed. Without a GPU every run uses ``accelerator=cpu`` (useful only
with ``--quick``, to check the script itself).
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import torch  # noqa: E402

TARGETS = {"clinfonce/simclr step": 1.02, "wcl/simclr step": 1.05,
           "device/cpu augmentation images/s": 2.0}
MAIN_CONFIG = "clinfonce_synthetic_cub_bench.yaml"


def environment() -> dict:
    import faiss
    import lightning

    from clinfonce_plugin.clusters.kmeans import faiss_gpu_count

    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "faiss": faiss.__version__, "faiss_gpus": faiss_gpu_count(),
            "lightning": lightning.__version__, "cpu_cores": os.cpu_count()}


# --------------------------------------------------------------------------- entry points
def run_entry(script: str, args: List[str], cwd: str, timeout: float) -> dict:
    """``python <script> <args>`` in ``cwd``; seconds, exit code, the output's tail."""
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=timeout)
        out, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) \
            else (err.stdout or "")
        out, code = out + f"\n(timed out after {timeout:.0f} s)", -1
    return {"seconds": time.perf_counter() - start, "returncode": code, "output": out}


def error_line(output: str) -> str:
    """The ``error:`` line of a failed run, else its last non-empty line."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1][:300]


def linear_top1(output: str) -> Dict[str, float]:
    """Linear and kNN top-1 of the run from main_linear.py's comparison table (its row
    ``this run  <method>  <linear top-1>  <kNN top-1>``)."""
    m = re.search(r"^this run\s+\S+\s+([0-9.]+)\s+([0-9.]+)", output, re.MULTILINE)
    return {"linear_top1": float(m.group(1)), "knn_top1": float(m.group(2))} if m else {}


def entry_runs(accel: str, quick: bool) -> List[List[tuple]]:
    """The entry-point runs as independent chains: each chain is a list of
    ``(check name, script, args)`` run in order, the next only when the previous passed
    (linear evaluation needs its pretraining); chains do not depend on each other."""
    epochs = (lambda n: ["max_epochs=1"] if quick else [f"max_epochs={n}"])
    common = [f"accelerator={accel}", "enable_progress_bar=false"]
    if quick:
        common += ["optimizer.batch_size=32", "limit_train_batches=2"]
    main_args = [f"accelerator={accel}"] + (common[2:] + ["max_epochs=1"] if quick else [])
    chains = [[("README main job: pretrain", "main_pretrain.py",
                ["--config-name", MAIN_CONFIG, *main_args]),
               ("README main job: linear", "main_linear.py",
                ["--config-name", MAIN_CONFIG, f"accelerator={accel}",
                 *(["max_epochs=1"] if quick else [])])]]
    for precision in ("32-true", "bf16-mixed"):
        chains.append([(f"augment_on=device {precision}", "main_pretrain.py", [
            "--config-name", MAIN_CONFIG, *common, *epochs(4), "data.augment_on=device",
            f"precision={precision}", f"name=gpucheck-device-{precision}", "overwrite=true"])])
    chains.append([("k-means refresh", "main_pretrain.py", [
        "--config-name", "clinfonce_kmeans_synthetic_cub.yaml", *common, *epochs(2),
        "name=gpucheck-kmeans", "overwrite=true"])])
    chains.append([("wcl (KNN multi-crop from epoch 1)", "main_pretrain.py", [
        "--config-name", "wcl_synthetic_cub.yaml", *common, *epochs(3),
        "method_kwargs.knn_warmup_epochs=1", "name=gpucheck-wcl", "overwrite=true"])])
    return chains


def check_of(name: str, res: dict, accel: str) -> dict:
    """A run's row: ok, seconds, the error line of a failed run, and what the run reports
    (the README job's top-1, where k-means ran)."""
    ok = res["returncode"] == 0
    extra = {}
    if name == "README main job: linear":
        extra = linear_top1(res["output"])
    elif name == "k-means refresh":
        notice = "[clinfonce] notice: k-means runs on the CPU" in res["output"]
        extra = {"faiss_on": "cpu (notice)" if notice else ("gpu" if accel == "gpu" else "cpu")}
    return {"ok": ok, "seconds": round(res["seconds"], 1),
            **({} if ok else {"error": error_line(res["output"])}), **extra}


def entry_checks(accel: str, work: str, quick: bool, timeout: float,
                 jobs: Optional[int] = None) -> Dict[str, dict]:
    """Runs :func:`entry_runs`' chains, ``jobs`` at a time (None: all at once; they are
    correctness checks, so sharing the GPU and the cores changes their seconds only). The
    rows come back in :func:`entry_runs`' order whatever order the runs finish in."""
    from concurrent.futures import ThreadPoolExecutor

    chains = entry_runs(accel, quick)

    def run_chain(chain):
        rows = {}
        for name, script, args in chain:
            rows[name] = check_of(name, run_entry(script, args, work, timeout), accel)
            print(f"[gpu_check] {name}: {'ok' if rows[name]['ok'] else 'FAIL'} in "
                  f"{rows[name]['seconds']:.0f} s", flush=True)
            if not rows[name]["ok"]:
                break
        return rows

    with ThreadPoolExecutor(max_workers=jobs or len(chains)) as pool:
        done = list(pool.map(run_chain, chains))
    return {name: row for rows in done for name, row in rows.items()}


# --------------------------------------------------------------------------- step ratios
STEP_SIZES = (32, 224)  # the paper's CIFAR-stem ResNet-18 at 32 px; ResNet-18 at 224 px
CIFAR_STEM_UP_TO = 32  # crop sizes up to this take the CIFAR stem and 5 steps per round


def cifar_size(size: int) -> bool:
    return size <= CIFAR_STEM_UP_TO


def step_ratios(device: str, batch: int, rounds: int, steps: int, size: int = 32) -> dict:
    """Training-step seconds of simclr, clinfonce and wcl (ResNet-18 with the CIFAR stem at
    32 px and below, the standard stem in channels-last above; bf16 autocast on CUDA),
    alternated; ratios to simclr as medians of per-round ratios."""
    import speed
    from _timing import alternate

    from clinfonce_plugin.host.runtime.backbones import apply_cifar_stem

    n = 4096
    cifar = cifar_size(size)
    cuda = device.startswith("cuda")
    channels_last = cuda and not cifar
    g = torch.Generator().manual_seed(0)
    batch_data = (torch.randint(0, n, (batch,), generator=g).to(device),
                  [torch.randn(batch, 3, size, size, generator=g).to(device) for _ in range(2)],
                  torch.randint(0, 30, (batch,), generator=g).to(device))

    def synced(fn: Callable[[], None]) -> Callable[[], None]:
        def run():
            for _ in range(steps):
                with torch.autocast(device_type="cuda" if cuda else "cpu",
                                    dtype=torch.bfloat16, enabled=cuda):
                    fn()
            if cuda:
                torch.cuda.synchronize()
        return run

    fns = {}
    for method in ("simclr", "clinfonce", "wcl"):
        model, _ = speed.build(method, "resnet18", batch, n)
        if cifar:
            apply_cifar_stem(getattr(model.backbone, "model", model.backbone))
        model = model.to(device)
        if channels_last:  # what the runtime's channels_last key does
            model = model.to(memory_format=torch.channels_last)
            model.channels_last = True
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        fns[method] = synced(speed.step_fn(model, opt, batch_data))
        fns[method]()  # warm-up (cuDNN autotuning, allocator)
    res = alternate(fns, rounds, "simclr")
    return {"backbone": f"resnet18 ({'cifar' if cifar else 'standard'} stem"
                        f"{', channels-last' if channels_last else ''})",
            "size": size, "batch": batch, "steps_per_call": steps, "rounds": rounds,
            "bf16": cuda, "seconds_per_step": {m: r["median_s"] / steps for m, r in res.items()},
            "clinfonce/simclr step": res["clinfonce"]["median_ratio"],
            "wcl/simclr step": res["wcl"]["median_ratio"]}


# --------------------------------------------------------------------------- throughput
class UtilSampler:
    """GPU utilisation (NVML, percent) sampled every ``period`` s while ``active``."""

    def __init__(self, period: float = 0.05) -> None:
        self.samples: List[float] = []
        self.active = False
        self._stop = threading.Event()
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML (no GPU, or nvidia-ml-py missing): no samples
            self._nvml = None
        self._thread = threading.Thread(target=self._loop, args=(period,), daemon=True)
        self._thread.start()

    def _loop(self, period: float) -> None:
        while not self._stop.wait(period):
            if self.active and self._handle is not None:
                self.samples.append(float(
                    self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))

    def close(self) -> Optional[float]:
        self._stop.set()
        self._thread.join()
        return statistics.mean(self.samples) if self.samples else None


def bench_throughput(accel: str, work: str, epochs: int, augment_on: str,
                     quick: bool) -> dict:
    """The bench run (``clinfonce_synthetic_cub_bench.yaml``) in this process: training
    images/s over the epochs after the first, and the GPU's mean utilisation then."""
    from hydra import compose, initialize_config_dir

    from clinfonce_plugin.run.pretrain import pretrain

    sampler = UtilSampler()

    from pipeline import StepTimer

    class EpochClock(StepTimer):
        """Per epoch: seconds, data wait and step time (bench/pipeline.py's split); the
        GPU is sampled during epochs after the first."""

        def __init__(self) -> None:
            super().__init__()
            self.images = 0

        def on_train_epoch_start(self, trainer, module) -> None:
            super().on_train_epoch_start(trainer, module)
            sampler.active = trainer.current_epoch >= 1

        def on_train_epoch_end(self, trainer, module) -> None:
            super().on_train_epoch_end(trainer, module)
            sampler.active = False
            self.images = trainer.num_training_batches * trainer.train_dataloader.batch_size

    overrides = [f"accelerator={accel}", f"max_epochs={epochs}", "checkpoint.enabled=false",
                 f"checkpoint.dir={os.path.join(work, 'trained_models')}",
                 f"data.train_path={os.path.join(work, 'datasets', 'synthetic_cub_bench')}",
                 "+enable_progress_bar=false", "+overwrite=true",
                 f"+data.augment_on={augment_on}", f"name=gpucheck-throughput-{augment_on}"]
    if quick:
        overrides += ["optimizer.batch_size=32", "+limit_train_batches=3"]
    with initialize_config_dir(config_dir=os.path.join(REPO, "scripts", "pretrain"),
                               version_base="1.2"):
        cfg = compose(config_name=MAIN_CONFIG, overrides=overrides)
    clock = EpochClock()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        pretrain(cfg, callbacks=[clock])
    finally:
        os.chdir(cwd)
        util = sampler.close()
    later = slice(1, None) if len(clock.epoch) > 1 else slice(None)
    epoch_s = statistics.median(clock.epoch[later])
    return {"augment_on": augment_on, "epochs": epochs, "images_per_epoch": clock.images,
            "epoch_s": epoch_s, "images_per_s": clock.images / epoch_s,
            "data_wait_s": statistics.median(clock.wait[later]),
            "step_s": statistics.median(clock.compute[later]),
            "gpu_util_percent": util}


# --------------------------------------------------------------------------- report
def table(result: dict) -> str:
    env = result["environment"]
    lines = [f"environment: torch {env['torch']}, CUDA {env['cuda']}, GPU {env['gpu']}, "
             f"faiss {env['faiss']} ({env['faiss_gpus']} GPU(s) for faiss), lightning "
             f"{env['lightning']}, {env['cpu_cores']} cores", "",
             "| check | result | seconds | detail |", "| --- | --- | --- | --- |"]
    for name, c in result["checks"].items():
        detail = c.get("error") or ", ".join(
            f"{k} {v}" for k, v in c.items() if k not in ("ok", "seconds"))
        lines.append(f"| {name} | {'ok' if c['ok'] else 'FAIL'} | {c.get('seconds', '')} "
                     f"| {detail} |")
    for steps in result.get("steps") or []:
        per = ", ".join(f"{m} {s * 1e3:.1f} ms" for m, s in steps["seconds_per_step"].items())
        lines += ["", f"step time, {steps['backbone']} {steps['size']} px, batch "
                      f"{steps['batch']}, bf16={steps['bf16']}: {per}"]
    lines += ["", "| measure | value | target |", "| --- | --- | --- |"]
    measures = result["measures"]
    for name, target in TARGETS.items():
        # a step ratio is measured at each size: one row per size
        names = sorted((m for m in measures if m.startswith(f"{name}, ")),
                       key=lambda m: int(m.split(", ")[-1].split()[0])) or [name]
        for key in names:
            value = measures.get(key)
            cell = "not measured" if value is None else f"{value:.3f}"
            lines.append(f"| {key} | {cell} | {'<=' if 'step' in name else '>='} {target} |")
    for row in result.get("throughput", []):
        util = row["gpu_util_percent"]
        lines.append(f"| bench run, augment_on={row['augment_on']}: images/s | "
                     f"{row['images_per_s']:.0f} | |")
        lines.append(f"| bench run, augment_on={row['augment_on']}: GPU utilisation % | "
                     f"{'n/a' if util is None else f'{util:.0f}'} | |")
        lines.append(f"| bench run, augment_on={row['augment_on']}: epoch s (data wait s, "
                     f"steps s) | {row['epoch_s']:.2f} ({row['data_wait_s']:.2f}, "
                     f"{row['step_s']:.2f}) | |")
    return "\n".join(lines)


def measures_of(steps: Optional[List[dict]], throughput: List[dict]) -> dict:
    out = {}
    for row in steps or []:
        for name in ("clinfonce/simclr step", "wcl/simclr step"):
            out[f"{name}, {row['size']} px"] = row[name]
    by = {row["augment_on"]: row for row in throughput}
    if "cpu" in by and "device" in by:
        out["device/cpu augmentation images/s"] = \
            by["device"]["images_per_s"] / by["cpu"]["images_per_s"]
    return out


def guarded(name: str, checks: Dict[str, dict], fn: Callable[[], object]):
    """fn(); on an exception, a FAIL row with its message and None."""
    start = time.perf_counter()
    try:
        value = fn()
    except Exception as err:  # a check that breaks must not stop the others
        checks[name] = {"ok": False, "seconds": round(time.perf_counter() - start, 1),
                        "error": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"}
        print(f"[gpu_check] {name}: FAIL ({checks[name]['error']})", flush=True)
        return None
    checks[name] = {"ok": True, "seconds": round(time.perf_counter() - start, 1)}
    print(f"[gpu_check] {name}: ok in {checks[name]['seconds']:.0f} s", flush=True)
    return value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short pass of every check")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "gpu_check.json"))
    p.add_argument("--work", default=None, help="working directory of the runs (data and "
                   "run directories; default: a temporary one)")
    p.add_argument("--skip", nargs="*", default=[], choices=["entry", "steps", "throughput"])
    p.add_argument("--timeout", type=float, default=300, help="seconds per entry-point run")
    p.add_argument("--jobs", type=int, default=None, help="entry-point runs at a time "
                   "(default: all five chains at once; 1: one after another, each run's "
                   "seconds then as a user sees them)")
    p.add_argument("--step-rounds", type=int, default=12, help="alternated rounds of the "
                   "step-time ratios (5 steps each at 32 px, 3 at 224 px)")
    p.add_argument("--step-sizes", type=int, nargs="*", default=None, help="crop sizes of "
                   f"the step-time ratios (default {' '.join(map(str, STEP_SIZES))}; "
                   f"{CIFAR_STEM_UP_TO} and below: CIFAR stem)")
    args = p.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    start = time.perf_counter()
    cuda = torch.cuda.is_available()
    accel, device = ("gpu", "cuda") if cuda else ("cpu", "cpu")
    env = environment()
    print(f"[gpu_check] {json.dumps(env)}", flush=True)
    work = args.work or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    checks: Dict[str, dict] = {}
    if "entry" not in args.skip:
        checks.update(entry_checks(accel, work, args.quick, args.timeout, args.jobs))
    steps = []
    if "steps" not in args.skip:
        for size in args.step_sizes or ((8, 64) if args.quick else STEP_SIZES):
            row = guarded(f"step-time ratios, {size} px", checks, lambda: step_ratios(
                device, 8 if args.quick else 256, 2 if args.quick else args.step_rounds,
                1 if args.quick else (5 if cifar_size(size) else 3), size))
            if row is not None:
                steps.append(row)
    throughput = []
    if "throughput" not in args.skip:
        for augment_on in ("cpu", "device"):
            row = guarded(f"bench run throughput, augment_on={augment_on}", checks,
                          lambda: bench_throughput(accel, work, 2 if args.quick else 5,
                                                   augment_on, args.quick))
            if row is not None:
                throughput.append(row)
    result = {"environment": env, "checks": checks, "steps": steps, "throughput": throughput,
              "measures": measures_of(steps, throughput), "targets": TARGETS,
              "seconds": round(time.perf_counter() - start, 1), "quick": args.quick}
    result["table"] = table(result)
    print(result["table"])
    print(f"[gpu_check] {result['seconds']:.0f} s in all", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    from clinfonce_plugin.utils.atomic import atomic_write_json

    atomic_write_json(args.out, result, indent=2)
    return 0 if all(c["ok"] for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
