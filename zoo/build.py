"""Builds the model zoo: trains the benchmark's models, writes each one's weights to
``zoo/<name>.pt``, measures them, and records everything in ``zoo/manifest.json``.

Every model is trained with ``bench/quality.py``'s recipe (its configs and overrides, the
benchmark variant of the synthetic CUB, test_resnet, 25 epochs, batch 128, lr 0.2) on one
seed, so a rerun lands within the seed spread of that benchmark. A zoo file holds the
backbone and projector weights (stored as float16, which halves the file; they are read back
as float32) and the resolved pretrain config under ``"args"``, so it evaluates with no
``args.json`` beside it. The accuracies in the manifest are measured on the written file.

    python zoo/build.py                                  # all models, ~30 min on 2 CPU cores
    python zoo/build.py --models simclr-synthetic_cub    # one model
    python zoo/build.py --evaluate-only                  # re-measure the files present
    python zoo/build.py --work-dir runs/zoo              # keep the training runs there

Run it from the repository root: the data (``datasets/synthetic_cub_bench``) is generated
there on first use, as the zoo files' configs name it.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import quality  # noqa: E402  (bench/quality.py: the benchmark's recipe, one place)
from clinfonce_plugin import host  # noqa: E402
from clinfonce_plugin.run.checkpoints import ARGS_KEY, safe_load, state_dict_of  # noqa: E402
from clinfonce_plugin.evaluate.compare import KNN_DISTANCE, KNN_K  # noqa: E402
from clinfonce_plugin.run.zoo import ZOO_DIR, load_manifest, sha256sum  # noqa: E402
from clinfonce_plugin.utils.atomic import atomic_path, atomic_write_text  # noqa: E402

# zoo name -> the benchmark row it is trained as (bench/quality.py SPECS)
MODELS = {
    "simclr-synthetic_cub": "simclr",
    "supcon-synthetic_cub": "supcon",
    "swav-synthetic_cub": "swav",
    "clinfonce-synthetic_cub": "clinfonce (attributes)",
    "clinfonce_kmeans-synthetic_cub": "clinfonce (kmeans)",
    "wcl-synthetic_cub": "wcl",
    "cluster_ce-synthetic_cub": "cluster_ce (attributes)",
}
SEED = 0
EPOCHS = 25
BACKBONE = "test_resnet"
BATCH_SIZE = 128
LR = 0.2
DATASET = "synthetic_cub_bench"
DATA_ROOT = "./datasets/synthetic_cub_bench"  # relative: the zoo files' configs are portable
# the state_dict prefixes a zoo file keeps (solo-learn's names; other heads are training-only)
KEPT = ("backbone.", "projector.")


def recipe(name: str, attribute_k: int):
    """(pretrain config name, overrides) of zoo model ``name``: bench/quality.py's row."""
    config, extra = quality.SPECS[MODELS[name]]
    overrides = [f"++seed={SEED}", f"++max_epochs={EPOCHS}", f"backbone.name={BACKBONE}",
                 f"optimizer.batch_size={BATCH_SIZE}", f"optimizer.lr={LR}",
                 f"data.dataset={DATASET}", f"data.train_path={DATA_ROOT}", f"++name={name}"]
    return config, overrides + [o.format(k=attribute_k) for o in extra]


def compose_pretrain(config: str, overrides):
    with initialize_config_dir(config_dir=os.path.join(REPO, "scripts/pretrain"),
                               version_base="1.2"):
        return compose(config_name=config, overrides=list(overrides))


def train(name: str, attribute_k: int, work: str):
    """(final checkpoint, reused) of zoo model ``name`` trained under ``work`` (a finished run
    already there is reused)."""
    from clinfonce_plugin.run.pretrain import pretrain

    config, overrides = recipe(name, attribute_k)
    cfg = compose_pretrain(config, overrides + [f"checkpoint.dir={work}",
                                                "++enable_progress_bar=false"])
    done = os.path.join(work, cfg.method, name, f"{name}.ckpt")
    if os.path.isfile(done):
        print(f"[zoo] {name}: reusing {done}", flush=True)
        return done, True
    return pretrain(cfg), False


def export(ckpt: str, name: str, out: str) -> dict:
    """Writes zoo file ``out`` from run checkpoint ``ckpt``: the kept weights as float16, the
    backbone's origin and the pretrain config. Returns the manifest facts of the file."""
    obj = safe_load(ckpt, "run checkpoint")
    state = state_dict_of(obj, ckpt)
    kept = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()
            if k.startswith(KEPT)}
    with open(os.path.join(os.path.dirname(ckpt), "args.json"), encoding="utf-8") as f:
        args = json.load(f)
    # where the training run lived says nothing about the model
    args["checkpoint"]["dir"] = "trained_models"
    payload = {"state_dict": kept, ARGS_KEY: args}
    if "clinfonce_backbone" in obj:
        payload["clinfonce_backbone"] = obj["clinfonce_backbone"]
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    backbone_params = sum(v.numel() for k, v in kept.items()
                          if k.startswith("backbone.") and v.is_floating_point()
                          and "running_" not in k)
    return {"method": args["method"], "backbone": args["backbone"]["name"],
            "backbone_parameters": int(backbone_params),
            "kept_weights": sorted({k.split(".")[0] for k in kept}),
            "clusters": args.get("method_kwargs", {}).get("clusters")}


def evaluate(name: str, path: str, out_dir: str, linear: bool = True) -> dict:
    """Linear (the fast features protocol and the papers' protocol) top-1 (``linear``), then
    kNN top-1 and the clustering scores of the zoo file ``path``, each with its wall time and
    the command that gives the same figure (every other key at its default)."""
    from clinfonce_plugin.evaluate.knn import knn_eval
    from clinfonce_plugin.evaluate.linear import linear_eval

    facts = {}
    for protocol in ("features", "paper") if linear else ():
        start = time.perf_counter()
        res = linear_eval(OmegaConf.create({"pretrained": path, "output_dir": out_dir,
                                            "enable_progress_bar": False, "protocol": protocol,
                                            "name": f"linear-{protocol}"}))
        seconds = time.perf_counter() - start
        key = "linear" if protocol == "features" else f"linear_{protocol}"
        command = f"python main_linear.py pretrained=zoo:{name}"
        facts.update({f"{key}_top1": round(res["top1"], 2), f"{key}_top5": round(res["top5"], 2),
                      f"{key}_seconds": round(seconds, 1),
                      f"{key}_command": command + ("" if protocol == "features"
                                                   else f" protocol={protocol}")})
    # the projector too when the file has one (cluster_ce has none)
    state = safe_load(path, "zoo file")["state_dict"]
    features = ["backbone"] + (["projector"] if any(k.startswith("projector.") for k in state)
                               else [])
    start = time.perf_counter()
    res = knn_eval(OmegaConf.create({"pretrained": path, "k": [KNN_K],
                                     "distance_function": [KNN_DISTANCE],
                                     "feature_type": features, "output_dir": out_dir,
                                     "name": "knn"}))
    seconds = time.perf_counter() - start
    rows = {r["feature"]: r for r in res["rows"]}
    scores = {r["feature"]: r for r in res["clustering"]}
    facts.update({"knn_top1": round(rows["backbone"]["top1"], 2),
                  "knn_top5": round(rows["backbone"]["top5"], 2),
                  "knn_seconds": round(seconds, 1),
                  "nmi": round(scores["backbone"]["nmi"], 4),
                  "clustering_acc": round(scores["backbone"]["acc"], 2),
                  "knn_command": f"python main_knn.py pretrained=zoo:{name} k=[{KNN_K}] "
                                 f"distance_function=[{KNN_DISTANCE}] "
                                 f"feature_type=[{','.join(features)}]"})
    if "projector" in rows:
        facts.update({"knn_projector_top1": round(rows["projector"]["top1"], 2),
                      "nmi_projector": round(scores["projector"]["nmi"], 4),
                      "clustering_acc_projector": round(scores["projector"]["acc"], 2)})
    return facts


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "clinfonce_plugin",
                                "scripts", "bench", "zoo/build.py"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_manifest(entries: dict, zoo_dir: str) -> None:
    path = os.path.join(zoo_dir, "manifest.json")
    atomic_write_text(path, json.dumps(entries, indent=2, sort_keys=True) + "\n",
                      encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--work-dir", default=None,
                        help="keep the training runs there (a finished run is reused); "
                             "default: a temporary directory")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="re-measure the zoo files present; train nothing")
    parser.add_argument("--knn-only", action="store_true",
                        help="with --evaluate-only: re-measure only kNN and clustering")
    parser.add_argument("--zoo-dir", default=ZOO_DIR)
    args = parser.parse_args(argv)
    if os.path.abspath(os.getcwd()) != REPO:
        raise SystemExit(f"run it from the repository root ({REPO}): the zoo files' configs "
                         f"name the data relative to it")
    if args.work_dir:
        os.makedirs(args.work_dir, exist_ok=True)
        return _build(args, os.path.abspath(args.work_dir))
    with tempfile.TemporaryDirectory(prefix="zoo-") as work:
        return _build(args, work)


def _build(args, work: str) -> int:
    from clinfonce_plugin.data.registry import build_dataset

    build_dataset(DATASET, DATA_ROOT, split="train")  # generated here on first use
    attribute_k = quality.chosen_k(DATA_ROOT)
    entries = load_manifest(args.zoo_dir)
    for name in args.models:
        file = f"{name}.pt"
        out = os.path.join(args.zoo_dir, file)
        config, overrides = recipe(name, attribute_k)
        entry = dict(entries.get(name, {}))
        if not args.evaluate_only:
            start = time.perf_counter()
            ckpt, reused = train(name, attribute_k, work)
            if not reused:
                entry["train_minutes"] = round((time.perf_counter() - start) / 60, 1)
            entry.update(export(ckpt, name, out))
            entry.update({
                "command": f"python zoo/build.py --models {name}",
                "config": f"scripts/pretrain/{config}.yaml", "overrides": overrides,
                "dataset": DATASET, "dataset_params": dict(quality.BENCH_DATA),
                "commit": git_commit(), "host": host.HOST_NAME,
                "torch": torch.__version__, "python": platform.python_version(),
                "dtype": "float16"})
        elif not os.path.isfile(out):
            print(f"[zoo] {name}: no file {out}; skipped", flush=True)
            continue
        entry.update({"file": file, "sha256": sha256sum(out), "size": os.path.getsize(out),
                      "evaluated_at_commit": git_commit()})
        entry.update(evaluate(name, out, os.path.join(work, "eval", name),
                              linear=not args.knn_only))
        entries[name] = entry
        write_manifest(entries, args.zoo_dir)
        print(f"[zoo] {name}: linear {entry.get('linear_top1')} / paper "
              f"{entry.get('linear_paper_top1')} / kNN {entry.get('knn_top1')} / NMI "
              f"{entry.get('nmi')} / ACC {entry.get('clustering_acc')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
