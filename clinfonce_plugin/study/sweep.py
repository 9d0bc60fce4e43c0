"""``study sweep``: Cl-InfoNCE trained once per point of a sweep and seed, each run evaluated
by the linear and kNN protocols, one JSON row per run.

A point is a member of a family file (``study families``; the ``precomputed`` provider
reads its column), a k of the ``kmeans`` provider or a level of the ``hierarchy`` provider.
Each run is the project's own pretrain job (``train.pretrain``: run directory, lock,
auto-resume of an interrupted run), then ``linear.linear_eval`` and ``knn.knn_eval`` on
its checkpoint. Rows are appended to ``<out>/rows.jsonl`` as runs finish; a sweep
started again with the same settings skips the runs that have a row, reuses a finished
pretrain run whose evaluation did not finish, and continues an interrupted one from its
last checkpoint.
"""
import copy
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..config import select
from ..errors import ConfigError, DataError
from ..metrics.information import conditional_entropy, entropy, mutual_information
from ..utils.atomic import atomic_write_bytes, atomic_write_json

ROWS = "rows.jsonl"
SETTINGS = "sweep.json"
KINDS = ("member", "k", "level")
KNN_K = 20  # neighbours of the kNN accuracy recorded in each row


@dataclass
class Plan:
    """What a sweep trains: ``kind`` in KINDS, the swept ``values``, the ``seeds``."""
    kind: str
    values: List[Any]
    seeds: List[int]
    config_name: str
    overrides: List[str]
    family_file: Optional[str] = None
    family: Optional[str] = None
    epochs: Optional[int] = None
    linear_epochs: Optional[int] = None
    knn_k: int = KNN_K
    extra: Dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict:
        """What must be equal for two invocations to be the same sweep (values and seeds
        may grow)."""
        return {"kind": self.kind, "config_name": self.config_name,
                "overrides": list(self.overrides), "family_file": self.family_file,
                "epochs": self.epochs, "linear_epochs": self.linear_epochs,
                "knn_k": self.knn_k}


def run_id(kind: str, value: Any, seed: int) -> str:
    return f"{kind}={value}/seed={seed}"


def _slug(kind: str, value: Any, seed: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{kind}-{value}-s{seed}")


# ----------------------------------------------------------------------------- checks
def _clusters(cfg: DictConfig) -> dict:
    node = select(cfg, "method_kwargs.clusters")
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def check_plan(plan: Plan, base: DictConfig) -> DictConfig:
    """Checks the plan against the composed pretrain config and its training split before
    anything trains; returns the checked config.

    Raises:
        ConfigError / DataError: a method without cluster providers, a provider that does
            not fit the sweep, a family file that does not match the training images or
            lacks a member, a k or level out of range.
    """
    from ..clusters.hierarchy import class_levels, dataset_tree
    from ..clusters.precomputed import match_paths, read_cluster_csv
    from .data import training_split

    if not plan.values:
        raise ConfigError("sweep: nothing to sweep (empty list of values)")
    if not plan.seeds:
        raise ConfigError("sweep: --seeds is empty")
    probe = copy.deepcopy(base)
    clusters = _clusters(probe)
    if select(probe, "method_kwargs.clusters") is None:
        raise ConfigError(f"sweep: config {plan.config_name} (method {probe.get('method')!r}) "
                          "has no method_kwargs.clusters: the study trains Cl-InfoNCE with "
                          "cluster providers (e.g. --config-name clinfonce_synthetic_cub)")
    if plan.kind == "member":
        if not os.path.isfile(plan.family_file):
            raise DataError(f"--family-file {plan.family_file}: no such file")
        # the provider the runs will use, with the first member, checks config and data
        probe.method_kwargs.clusters = {"provider": "precomputed", "file": plan.family_file,
                                        "column": plan.values[0]}
    elif plan.kind == "k":
        if clusters.get("provider") != "kmeans":
            raise ConfigError(f"sweep --k: config {plan.config_name} clusters with provider "
                              f"{clusters.get('provider')!r}; a k sweep needs provider kmeans "
                              "(e.g. --config-name clinfonce_kmeans_synthetic_cub)")
    elif plan.kind == "level":
        if clusters.get("provider") != "hierarchy":
            raise ConfigError(f"sweep --levels: config {plan.config_name} clusters with "
                              f"provider {clusters.get('provider')!r}; a level sweep needs "
                              "provider hierarchy (e.g. --config-name "
                              "clinfonce_hierarchy_cifar100)")
    checked, info = training_split(probe, plan.config_name)
    n = info.num_samples
    if info.labels is None or not (np.asarray(info.labels) >= 0).any():
        raise DataError(f"sweep: the training split of {plan.config_name} at "
                        f"{checked.data.train_path} has no labels; each run is evaluated "
                        "(linear, kNN) and its clusters measured against them")
    if plan.kind == "member":
        header = _csv_header(plan.family_file)
        missing = [m for m in plan.values if m not in header]
        if missing:
            choices = [h for h in header if h not in ("", "path", "class")]
            raise DataError(f"--family-file {plan.family_file}: no member column {missing[0]!r};"
                            f" its members are {choices}")
        try:
            keys, _, _, _ = read_cluster_csv(plan.family_file, column=plan.values[0])
            match_paths(keys, list(info.paths or []), plan.family_file)
        except ValueError as err:
            raise DataError(f"--family-file {plan.family_file} does not match the training "
                            f"split of {plan.config_name} ({n} images at "
                            f"{checked.data.train_path}): {err}") from None
    elif plan.kind == "k":
        bad = [k for k in plan.values if not 2 <= int(k) <= n]
        if bad:
            raise ConfigError(f"sweep --k: {bad} out of range; the training split has {n} "
                              f"images, so 2 <= k <= {n}")
    else:
        try:
            tree, source = dataset_tree(info, clusters.get("pairs_file"), clusters.get("pairs"))
        except (ValueError, FileNotFoundError) as err:
            raise DataError(f"sweep --levels: {err}") from None
        deepest = class_levels(tree, info)
        bad = [lv for lv in plan.values if not 1 <= int(lv) <= deepest]
        if bad:
            raise ConfigError(f"sweep --levels: {bad} out of range; the deepest class of the "
                              f"training split sits at level {deepest} of {source}, so "
                              f"1 <= level <= {deepest}")
    return checked


def _csv_header(path: str) -> List[str]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
        return [h.strip() for h in next(csv.reader(f), [])]


def family_members(path: str) -> List[str]:
    """The member columns of a family file, in file order."""
    return [h for h in _csv_header(path) if h not in ("", "path", "class")]


# ----------------------------------------------------------------------------- runs
def run_config(plan: Plan, base: DictConfig, value: Any, seed: int, runs_dir: str) -> DictConfig:
    """The pretrain config of one run: the base config with the point's clusters, the seed,
    its own run name under ``runs_dir`` and auto-resume of an interrupted run."""
    cfg = copy.deepcopy(base)
    if plan.kind == "member":
        cfg.method_kwargs.clusters = {"provider": "precomputed", "file": plan.family_file,
                                      "column": value}
    else:
        cfg.method_kwargs.clusters[plan.kind] = int(value)
    cfg.seed = int(seed)
    if plan.epochs is not None:
        cfg.max_epochs = int(plan.epochs)
    cfg.name = _slug(plan.kind, value, seed)
    cfg.checkpoint = OmegaConf.merge(cfg.get("checkpoint") or {},
                                     {"dir": runs_dir, "enabled": True})
    cfg.enable_progress_bar = False
    cfg.auto_resume = {"enabled": True, "max_hours": 1e6}
    return cfg


def _measures_callback(path: str):
    """A Lightning callback writing I(Z;T), H(Z|T), H(Z) (bits) and the cluster count of the
    provider's ids at the end of training to ``path``, against the training labels."""
    import lightning.pytorch as pl

    class ClusterMeasures(pl.Callback):
        def on_train_end(self, trainer, module):
            provider = getattr(module, "provider", None)
            if provider is None or not trainer.is_global_zero:
                return
            z = provider.ids.detach().cpu().numpy()
            t = np.asarray(provider.info.labels, dtype=np.int64)
            known = t >= 0
            row = {"I(Z;T)": mutual_information(z[known], t[known]),
                   "H(Z|T)": conditional_entropy(z[known], t[known]),
                   "H(Z)": entropy(z[known]), "clusters": int(np.unique(z).size)}
            atomic_write_json(path, row)

    return ClusterMeasures()


def one_run(plan: Plan, base: DictConfig, value: Any, seed: int, runs_dir: str) -> dict:
    """Pretrains under ``runs_dir`` (or reuses the finished pretrain run there), evaluates,
    returns the row."""
    from ..evaluate.knn import knn_eval
    from ..evaluate.linear import linear_eval
    from ..run.pretrain import pretrain

    cfg = run_config(plan, base, value, seed, runs_dir)
    final_dir = os.path.join(runs_dir, cfg.method, cfg.name)
    ckpt = os.path.join(final_dir, f"{cfg.name}.ckpt")
    measures = os.path.join(runs_dir, f"{cfg.name}.measures.json")
    start = time.perf_counter()
    if not (os.path.isfile(ckpt) and os.path.isfile(measures)):
        ckpt = pretrain(cfg, callbacks=[_measures_callback(measures)])
    with open(measures) as f:
        info = json.load(f)
    lin_cfg = {"pretrained": ckpt, "seed": int(seed), "output_dir": final_dir,
               "name": "linear", "enable_progress_bar": False}
    if plan.linear_epochs is not None:
        lin_cfg["max_epochs"] = int(plan.linear_epochs)
    lin = linear_eval(OmegaConf.create(lin_cfg))
    knn = knn_eval(OmegaConf.create({
        "pretrained": ckpt, "output_dir": final_dir, "name": "knn",
        "feature_type": ["backbone"], "distance_function": ["cosine"], "k": [plan.knn_k],
        "clustering": {"enabled": False}}))
    knn_row = knn["rows"][0]
    row = {"run": run_id(plan.kind, value, seed), "kind": plan.kind, "value": value,
           "seed": int(seed), "family": plan.family, "config": plan.config_name,
           "epochs": int(cfg.max_epochs), "linear_top1": lin["top1"], "linear_top5": lin["top5"],
           "knn_top1": knn_row["top1"], "knn_k": int(knn_row["k"]),
           "seconds": time.perf_counter() - start, "checkpoint": ckpt}
    row.update(info)
    return row


def read_rows(path: str) -> List[dict]:
    """The rows of a ``rows.jsonl``, one JSON object per line (blank lines skipped). A last
    line without its newline is a row cut by a kill and is ignored.

    Raises:
        DataError: any other line that is not a JSON object, named by ``path:line``.
    """
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break  # the last line, cut short
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                problem = None if isinstance(row, dict) else f"a JSON {type(row).__name__}"
            except ValueError as err:
                problem = f"no valid JSON ({err})"
            if problem:
                raise DataError(f"{path}:{number}: expected one JSON object per line (a row "
                                f"written by 'study sweep'), found {problem}: "
                                f"{line.strip()[:80]!r}; repair or remove that line")
            rows.append(row)
    return rows


def _drop_cut_line(path: str) -> None:
    """Rewrites ``path`` without a last line that a kill cut short (so that the next row
    starts on a line of its own); the complete rows are kept as they are."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        data = f.read()
    if not data or data.endswith(b"\n"):
        return
    atomic_write_bytes(path, data[:data.rfind(b"\n") + 1])


def _append_row(path: str, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _start(plan: Plan, out_dir: str) -> None:
    """Records the plan's settings in ``<out>/sweep.json``, or checks that an existing
    sweep there has the same ones."""
    path = os.path.join(out_dir, SETTINGS)
    mine = plan.settings()
    if os.path.exists(path):
        with open(path) as f:
            theirs = json.load(f)
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ConfigError(f"--out {out_dir} holds another sweep ({path}: {diff} differ: "
                              f"{ {k: theirs.get(k) for k in diff} } there, "
                              f"{ {k: mine.get(k) for k in diff} } now); give another --out")
        return
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_json(path, mine, indent=2)


def run_sweep(plan: Plan, base: DictConfig, out_dir: str,
              work_dir: Optional[str] = None) -> List[dict]:
    """Runs every (value, seed) of ``plan`` without a row in ``<out_dir>/rows.jsonl``, the
    runs' checkpoints and logs under ``work_dir`` (default ``<out_dir>/runs``); returns all
    rows of the sweep. Everything is checked before the first run trains."""
    check_plan(plan, base)
    _start(plan, out_dir)
    rows_path = os.path.join(out_dir, ROWS)
    _drop_cut_line(rows_path)
    done = {r["run"] for r in read_rows(rows_path)}
    todo = [(v, s) for v in plan.values for s in plan.seeds if run_id(plan.kind, v, s) not in done]
    total = len(plan.values) * len(plan.seeds)
    print(f"[study] sweep of {plan.kind} over {plan.values}, seeds {plan.seeds}: {total} runs, "
          f"{total - len(todo)} already in {rows_path}", flush=True)
    start = time.perf_counter()
    for i, (value, seed) in enumerate(todo, 1):
        print(f"[study] run {total - len(todo) + i}/{total}: {plan.kind}={value} seed {seed}",
              flush=True)
        row = one_run(plan, base, value, seed, work_dir or os.path.join(out_dir, "runs"))
        _append_row(rows_path, row)
        elapsed = time.perf_counter() - start
        left = elapsed / i * (len(todo) - i)
        print(f"[study] {row['run']}: linear top-1 {row['linear_top1']:.2f}, kNN top-1 "
              f"{row['knn_top1']:.2f}, I(Z;T) {row['I(Z;T)']:.3f}, H(Z|T) "
              f"{row['H(Z|T)']:.3f} ({row['seconds']:.0f} s; {elapsed / 60:.1f} min so far, "
              f"about {left / 60:.1f} min left)", flush=True)
    wanted = {run_id(plan.kind, v, s) for v in plan.values for s in plan.seeds}
    return [r for r in read_rows(rows_path) if r["run"] in wanted]
