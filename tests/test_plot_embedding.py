"""The t-SNE picture's pieces (issue 14, item 8): the class pick and the stratified subsample
against hand-counted cases, the cluster ids it colours by against hand-computed attribute
clusters and a checkpoint's k-means ids, the scatter's colours, and the no-overwrite rule."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.config import check_plot_cfg
from clinfonce_plugin.errors import ConfigError, OutputExists
from clinfonce_plugin.evaluate.embedding import cluster_ids, pick_classes, stratified_subsample
from clinfonce_plugin.evaluate.plots import check_outputs, new_figure, save_png, scatter_by


# ----------------------------------------------------------------------- subsample
def test_the_subsample_keeps_each_labels_share_with_largest_remainders():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    # 5 of 10: quotas 3, 1.5, 0.5 -> floors 3, 1, 0; one place left, remainders 0.5 and 0.5
    # tie -> the smaller label 1 gets it
    picked = stratified_subsample(labels, 5, seed=0)
    assert np.bincount(labels[picked], minlength=3).tolist() == [3, 2, 0]
    # 7 of 10: quotas 4.2, 2.1, 0.7 -> floors 4, 2, 0; one left -> label 2 (0.7)
    picked = stratified_subsample(labels, 7, seed=0)
    assert np.bincount(labels[picked], minlength=3).tolist() == [4, 2, 1]


def test_the_subsample_is_sorted_distinct_seeded_and_complete_when_small():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    a = stratified_subsample(labels, 20, seed=3)
    assert len(a) == 20 and np.all(np.diff(a) > 0)
    assert np.bincount(labels[a]).tolist() == [10, 6, 3, 1]  # exact shares of 20 / 100
    assert np.array_equal(a, stratified_subsample(labels, 20, seed=3))
    assert not np.array_equal(a, stratified_subsample(labels, 20, seed=4))
    assert np.array_equal(stratified_subsample(labels, 100, seed=0), np.arange(100))
    assert np.array_equal(stratified_subsample(labels, 500, seed=0), np.arange(100))


def test_the_subsample_draws_uniformly_within_a_label():
    # each of the 10 samples of label 0 is drawn in about half of 2000 seeds (5 of 10)
    labels = np.array([0] * 10 + [1] * 10)
    hits = np.zeros(10)
    for seed in range(2000):
        picked = stratified_subsample(labels, 10, seed)
        hits += np.isin(np.arange(10), picked)
    assert np.allclose(hits / 2000, 0.5, atol=0.05)


def test_pick_classes_draws_whole_classes():
    labels = np.array([3, 1, 3, 2, 0, 1, 2, 0, 4, 4])
    index = pick_classes(labels, 2, seed=0)
    chosen = set(labels[index].tolist())
    assert len(chosen) == 2
    assert index.tolist() == [i for i, c in enumerate(labels) if c in chosen]  # all of them
    assert np.array_equal(pick_classes(labels, None, 0), np.arange(10))
    assert np.array_equal(pick_classes(labels, 5, 0), np.arange(10))


# ----------------------------------------------------------------------- cluster ids
ATTRIBUTES = np.array([[0, 0, 0], [0, 1, 1], [0, 0, 1], [1, 0, 0], [1, 0, 1], [1, 0, 1]])


def _split(n=6, attributes=ATTRIBUTES):
    info = SampleInfo(num_samples=n, labels=np.arange(n) % 2, attributes=attributes,
                      attribute_names=[f"a{i}" for i in range(attributes.shape[1])],
                      paths=[f"{i}.jpg" for i in range(n)], class_names=["x", "y"])
    return SimpleNamespace(info=info)


def _pre_cfg(clusters, method="clinfonce"):
    return OmegaConf.create({"method": method, "method_kwargs": {"clusters": clusters}})


def test_attribute_clusters_are_the_providers():
    # entropies: a0 1 bit (3 of 6), a2 0.918 (4 of 6), a1 0.650 (1 of 6); k=2 keeps a0, a2:
    # rows (0,0) (0,1) (0,1) (1,0) (1,1) (1,1) -> ids in lexicographic order of the rows
    ids, note = cluster_ids(_pre_cfg({"provider": "attributes", "k": 2}), "unused.ckpt",
                            _split())
    assert ids.tolist() == [0, 1, 1, 2, 3, 3]
    assert note == "attributes, 4 clusters"


def test_a_method_without_clusters_has_no_cluster_picture():
    ids, note = cluster_ids(OmegaConf.create({"method": "simclr", "method_kwargs": {}}),
                            "unused.ckpt", _split())
    assert ids is None and note == "method simclr has no cluster provider"


def _kmeans_ckpt(path, ids, refresh_epoch=3):
    state = {"backbone.w": torch.zeros(1)}
    if ids is not None:
        state["provider.ids"] = torch.tensor(ids)
        state["provider.refresh_epoch"] = torch.tensor(refresh_epoch)
    torch.save({"state_dict": state}, path)
    return str(path)


def test_kmeans_clusters_are_the_ones_the_checkpoint_holds(tmp_path):
    stored = [2, 0, 1, 1, 0, 2]
    ckpt = _kmeans_ckpt(tmp_path / "k.ckpt", stored)
    ids, note = cluster_ids(_pre_cfg({"provider": "kmeans", "k": 3}), ckpt, _split())
    assert ids.tolist() == stored and note == "kmeans, 3 clusters (from the checkpoint)"


@pytest.mark.parametrize("ids,epoch,why", [
    (None, 0, "does not hold the kmeans clusters (provider.ids)"),
    ([0, 0, 0, 0, 0, 0], -1, "were never computed"),
    ([0, 1, 0, 1], 2, "holds 4 kmeans cluster ids, the training split has 6 images"),
])
def test_kmeans_clusters_that_are_not_known_are_said_so(tmp_path, ids, epoch, why):
    ckpt = _kmeans_ckpt(tmp_path / "k.ckpt", ids, epoch)
    got, note = cluster_ids(_pre_cfg({"provider": "kmeans", "k": 2}), ckpt, _split())
    assert got is None and why in note


def test_an_unknown_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="provider 'nope' is not registered"):
        cluster_ids(_pre_cfg({"provider": "nope"}), "x.ckpt", _split())


# ----------------------------------------------------------------------- pictures
def test_each_value_gets_its_points_and_its_own_colour():
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    values = np.array([7, 3, 7, 5, 3])
    fig = new_figure(4, 3, "test")
    ax = fig.add_subplot()
    collections = scatter_by(ax, xy, values, ["three", "five", "seven"], "t")
    # one collection per distinct value in sorted order, holding exactly its points
    assert [c.get_label() for c in collections] == ["three", "five", "seven"]
    for c, value in zip(collections, [3, 5, 7]):
        assert np.array_equal(c.get_offsets(), xy[values == value])
    colours = [tuple(c.get_facecolor()[0]) for c in collections]
    assert len(set(colours)) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["three", "five", "seven"]


def test_pictures_are_never_written_over_a_file_silently(tmp_path):
    path = tmp_path / "p.png"
    path.write_text("mine")
    with pytest.raises(OutputExists, match=r"p.png exist\(s\): choose another name= or "
                                           r"output_dir=, or set overwrite=true"):
        check_outputs([str(path), str(tmp_path / "free.png")], overwrite=False)
    check_outputs([str(path)], overwrite=True)
    fig = new_figure(2, 2, "test")
    fig.add_subplot().plot([0, 1])
    old = save_png(fig, str(path))
    assert old is not None and open(old).read() == "mine"  # renamed aside, not deleted
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == sorted(["p.png", os.path.basename(old)])


def test_plot_config_keys_are_checked():
    with pytest.raises(ConfigError, match="perplexty: unknown key"):
        check_plot_cfg(OmegaConf.create({"pretrained": "x.ckpt", "perplexty": 5}))
    with pytest.raises(ConfigError, match="split: expected one of"):
        check_plot_cfg(OmegaConf.create({"pretrained": "x.ckpt", "split": "val"}))
    cfg = check_plot_cfg(OmegaConf.create({"pretrained": "x.ckpt"}))
    assert (cfg.max_points, cfg.seed, cfg.classes, cfg.split) == (1000, 0, None, "train")
