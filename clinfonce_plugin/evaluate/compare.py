"""A linear evaluation's result next to zoo models evaluated the same way on the same data
(the linear key ``compare_zoo``): each model's linear top-1 with the evaluation's own settings
and its weighted-kNN top-1 (backbone features, cosine, k 20), printed as one table."""
from typing import Callable, Dict, List

from omegaconf import OmegaConf

from ..run.zoo import PREFIX

# the kNN column: solo-learn's online-kNN setting (k 20, cosine), one place
KNN_K, KNN_DISTANCE = 20, "cosine"


def knn_top1(pretrained: str, data: dict, output_dir: str, name: str) -> float:
    from .knn import knn_eval

    # backbone rows only: a model without projector (cluster_ce) has its row too
    res = knn_eval(OmegaConf.create({"pretrained": pretrained, "k": [KNN_K],
                                     "distance_function": [KNN_DISTANCE], "data": data,
                                     "feature_type": ["backbone"],
                                     "clustering": {"enabled": False},
                                     "output_dir": output_dir, "name": name}))
    return next(r["top1"] for r in res["rows"] if r["feature"] == "backbone")


def compare(cfg, own: Dict, data: dict, output_dir: str, linear: Callable) -> List[Dict]:
    """Rows [{model, method, linear_top1, knn_top1}]: first the evaluated checkpoint (its
    linear result ``own``), then every ``cfg.compare_zoo`` entry evaluated by ``linear`` (the
    linear evaluation itself) with ``cfg``'s settings and the data keys ``data`` of the
    evaluated run, so that every row saw the same images."""
    rows = [{"model": "this run", "method": own["method"], "linear_top1": own["top1"],
             "knn_top1": knn_top1(cfg.pretrained, data, output_dir, f"knn-{own['name']}")}]
    for zoo_name in cfg.compare_zoo:
        sub = OmegaConf.to_container(cfg, resolve=True)
        sub.update(pretrained=PREFIX + zoo_name, compare_zoo=[], data=data,
                   output_dir=output_dir, name=f"linear-zoo-{zoo_name}")
        res = linear(OmegaConf.create(sub))
        rows.append({"model": PREFIX + zoo_name, "method": res["method"],
                     "linear_top1": res["top1"],
                     "knn_top1": knn_top1(PREFIX + zoo_name, data, output_dir,
                                          f"knn-zoo-{zoo_name}")})
    return rows


def format_rows(rows: List[Dict], dataset: str) -> str:
    width = max(len(r["model"]) for r in rows)
    lines = [f"same data ({dataset}), same protocol; kNN: backbone, {KNN_DISTANCE}, k={KNN_K}",
             f"{'model':<{width}}  {'method':<10} {'linear top-1':>12} {'kNN top-1':>10}"]
    for r in rows:
        lines.append(f"{r['model']:<{width}}  {r['method']:<10} {r['linear_top1']:>12.2f} "
                     f"{r['knn_top1']:>10.2f}")
    return "\n".join(lines)
