"""t-SNE pictures of a pretrained backbone's features (WCL Fig. 4), coloured by label and, for
a run trained with a cluster provider (``clinfonce``, ``cluster_ce``), by cluster id:

    python -m clinfonce_plugin.plot_embedding pretrained=<.ckpt or zoo:name> [split=test]
        [classes=10] [max_points=1000] [perplexity=30] [seed=0]

Writes ``<name>-labels.png``, ``<name>-clusters.png`` (when the cluster ids are known) and
``<name>.csv`` (every point: dataset index, image path, label, cluster id, t-SNE x and y).

- Images: the split's images (resize + centre crop, as in linear evaluation); with
  ``classes=C`` only C classes drawn at random with ``seed``; then at most ``max_points``
  of them, a subsample stratified by label (``stratified_subsample``).
- Cluster ids are those the pretraining used, so they exist for the training split only:
  a static provider (attributes, labels, hierarchy, precomputed, instance) is rebuilt from
  the pretrain config over the split through the provider registry; k-means ids are read
  from the checkpoint's provider state (``provider.ids``), which zoo files do not carry.
- t-SNE: scikit-learn's ``TSNE`` (PCA initialisation, ``random_state=seed``): the same
  inputs give the same picture.
"""
import csv
import io
import os
from typing import Optional, Tuple

import numpy as np
import omegaconf
from omegaconf import OmegaConf
from torch.utils.data import Subset

from ..run.checkpoints import safe_load, state_dict_of
from ..clusters.registry import CLUSTER_PROVIDERS, build_from_spec
from ..config import check_plot_cfg, select
from ..data.indexed import TransformedImages
from ..data.transforms import eval_transform
from ..errors import ConfigError, DataError
from ..utils.extras import require
from .pretrained import extract_features, load_pretrained_backbone, open_labelled_splits
from .plots import check_outputs, new_figure, save_png, save_text, scatter_by
from ..run.zoo import resolve_pretrained

USE = "plot_embedding"


def pick_classes(labels: np.ndarray, count: Optional[int], seed: int) -> np.ndarray:
    """The indexes of the samples of ``count`` classes drawn uniformly without replacement
    from the distinct labels (``np.random.default_rng(seed)``), ascending; every index when
    ``count`` is None or not below the number of classes."""
    classes = np.unique(labels)
    if count is None or count >= len(classes):
        return np.arange(len(labels))
    chosen = np.random.default_rng(seed).choice(classes, size=count, replace=False)
    return np.flatnonzero(np.isin(labels, chosen))


def stratified_subsample(labels: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """At most ``max_points`` indexes into ``labels``, ascending, each label keeping its
    share: every index when there are at most ``max_points``; otherwise label c (of n_c
    samples out of N) gets floor(max_points * n_c / N) places, and the places left over go
    one each to the labels of largest remainder (max_points * n_c / N minus its floor; ties
    to the smaller label). The places of a label are filled with a uniform draw without
    replacement from its samples, one ``np.random.default_rng(seed)`` drawing for the labels
    in ascending order."""
    labels = np.asarray(labels)
    n = len(labels)
    if n <= max_points:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    quota = max_points * counts / n
    places = np.floor(quota).astype(np.int64)
    left = max_points - int(places.sum())
    # stable sort on the negated remainder: equal remainders keep ascending label order
    places[np.argsort(-(quota - places), kind="stable")[:left]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
              for c, k in zip(classes, places)]
    return np.sort(np.concatenate(chosen))


def cluster_ids(pre_cfg: omegaconf.DictConfig, ckpt: str, split) -> Tuple[Optional[np.ndarray],
                                                                        str]:
    """The cluster id of every image of the training ``split`` as the pretraining had them,
    and a short description (provider, number of clusters); (None, why) when they are not
    known."""
    spec = select(pre_cfg, "method_kwargs.clusters")
    if spec is None:
        return None, f"method {pre_cfg.method} has no cluster provider"
    spec = OmegaConf.to_container(spec, resolve=True)
    name = spec.get("provider")
    if name not in CLUSTER_PROVIDERS:
        raise ConfigError(f"{ckpt}: the pretrain config's method_kwargs.clusters.provider "
                          f"{name!r} is not registered. Choose from {sorted(CLUSTER_PROVIDERS)}")
    n = split.info.num_samples
    if not CLUSTER_PROVIDERS[name].dynamic:
        try:
            provider = build_from_spec(spec, split.info)
        except (ValueError, OSError) as err:
            raise ConfigError(f"the pretrain config's method_kwargs.clusters ({spec}): "
                              f"{err}") from None
        return provider.ids.numpy(), f"{name}, {provider.num_clusters} clusters"
    state = state_dict_of(safe_load(ckpt, "pretrained checkpoint"), ckpt)
    ids, epoch = state.get("provider.ids"), state.get("provider.refresh_epoch")
    if ids is None:
        return None, (f"{ckpt} does not hold the {name} clusters (provider.ids): a run's "
                      f"checkpoint has them, zoo files keep the weights only")
    if epoch is not None and int(epoch) < 0:
        return None, f"the {name} clusters of {ckpt} were never computed"
    if ids.numel() != n:
        return None, (f"{ckpt} holds {ids.numel()} {name} cluster ids, the training split "
                      f"has {n} images (another dataset?)")
    ids = ids.numpy()
    return ids, f"{name}, {len(np.unique(ids))} clusters (from the checkpoint)"


def tsne(features: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """(N, 2) t-SNE of the (N, D) ``features`` (scikit-learn, PCA initialisation, the
    perplexity lowered to N - 1 when N is not above it)."""
    manifold = require("sklearn.manifold", "scikit-learn", "plots", USE)
    perplexity = min(float(perplexity), len(features) - 1.0)
    model = manifold.TSNE(n_components=2, perplexity=perplexity, init="pca",
                          learning_rate="auto", random_state=seed)
    return model.fit_transform(np.asarray(features, dtype=np.float32))


def class_name(info, label: int) -> str:
    return info.class_title(label)


def _table(index, info, labels, clusters, xy) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "path", "label", "class", "cluster", "x", "y"])
    for row, i in enumerate(index):
        writer.writerow([int(i), info.paths[i] if info.paths else "", int(labels[row]),
                         class_name(info, labels[row]),
                         "" if clusters is None else int(clusters[row]),
                         f"{xy[row, 0]:.6g}", f"{xy[row, 1]:.6g}"])
    return out.getvalue()


def plot_embedding(cfg: omegaconf.DictConfig, source: Optional[str] = None) -> dict:
    """Runs the job (see the module docstring); returns the written paths, the dataset
    indexes drawn, their labels, cluster ids (or None), the (N, 2) points and the note on
    the clusters."""
    cfg = check_plot_cfg(cfg, source)
    require("matplotlib", "matplotlib", "plots", USE)  # before the features, not after
    require("sklearn", "scikit-learn", "plots", USE)
    ckpt = resolve_pretrained(cfg.pretrained)
    out_dir = cfg.output_dir or ("." if cfg.pretrained.startswith("zoo:")
                                 else os.path.dirname(os.path.abspath(ckpt)))
    backbone, _, pre_cfg = load_pretrained_backbone(ckpt)
    name = cfg.name or f"tsne-{pre_cfg.name}-{cfg.split}"
    paths = {kind: os.path.join(out_dir, f"{name}-{kind}.png") for kind in ("labels",
                                                                            "clusters")}
    paths["table"] = os.path.join(out_dir, f"{name}.csv")
    check_outputs(paths.values(), cfg.overwrite)

    train, test = open_labelled_splits(cfg, pre_cfg, "the t-SNE picture")
    split = train if cfg.split == "train" else test
    all_labels = np.asarray(split.info.labels)
    if cfg.split == "train":
        all_clusters, note = cluster_ids(pre_cfg, ckpt, split)
    else:
        all_clusters, note = None, "cluster ids exist for the training split only (split=train)"
    picked = pick_classes(all_labels, cfg.classes, cfg.seed)
    index = picked[stratified_subsample(all_labels[picked], cfg.max_points, cfg.seed)]
    if len(index) < 3:
        raise DataError(f"t-SNE needs at least 3 images; the {cfg.split} split gives "
                        f"{len(index)} (classes={cfg.classes})")
    images = Subset(TransformedImages(split.dataset, eval_transform(pre_cfg)), index.tolist())
    feats, _ = extract_features(backbone, images, cfg.feature_batch_size,
                                int(cfg.data.num_workers))
    xy = tsne(feats.numpy(), cfg.perplexity, cfg.seed)
    labels = all_labels[index]
    clusters = None if all_clusters is None else all_clusters[index]

    what = (f"{pre_cfg.method} on {cfg.data.dataset} ({cfg.split} split, {len(index)} images"
            f"{'' if cfg.classes is None else f', {len(np.unique(labels))} classes'}): "
            f"t-SNE of backbone features")
    written = {}
    fig = new_figure(7.5, 6.0, USE)
    names = [class_name(split.info, c) for c in np.unique(labels)]
    scatter_by(fig.add_subplot(), xy, labels, names, f"{what}\ncoloured by label")
    written["labels"] = paths["labels"]
    moved = [save_png(fig, paths["labels"])]
    if clusters is not None:
        fig = new_figure(7.5, 6.0, USE)
        ids = np.unique(clusters)
        scatter_by(fig.add_subplot(), xy, clusters, [f"cluster {c}" for c in ids],
                   f"{what}\ncoloured by cluster id: {note}")
        written["clusters"] = paths["clusters"]
        moved.append(save_png(fig, paths["clusters"]))
    else:
        print(f"[clinfonce] note: no cluster picture: {note}")
    written["table"] = paths["table"]
    moved.append(save_text(_table(index, split.info, labels, clusters, xy), paths["table"]))
    for old in filter(None, moved):
        print(f"[clinfonce] the previous file is kept as {old}")
    print(f"[clinfonce] {what} -> {', '.join(written.values())}")
    return {"paths": written, "index": index, "labels": labels, "clusters": clusters,
            "xy": xy, "note": note}
