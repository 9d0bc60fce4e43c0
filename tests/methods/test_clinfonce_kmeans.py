"""clinfonce with the kmeans provider: the refresh (embedding pass + k-means), its schedule,
its metrics, checkpoint/resume of the clusters, and the benchmark's smoke mode."""
import csv
import os

import numpy as np
import pytest
import torch

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin import host
from clinfonce_plugin.clusters.kmeans import compact_clusters, spherical_kmeans
from clinfonce_plugin.clusters.sample_info import SampleInfo
from tests.helpers import load_bench, slow_mi_and_cond_entropy, yaml_pretrain_cfg

N = 20


def _images(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.rand(n, 3, 32, 32, generator=g),
                                          torch.arange(n) % 4)


def _model(cfg_factory, labels=None, **clusters):
    cfg = cfg_factory("clinfonce", clusters={"provider": "kmeans", "k": 3, **clusters})
    labels = np.arange(N) % 4 if labels is None else labels
    torch.manual_seed(0)
    model = host.METHODS["clinfonce"](cfg, sample_info=SampleInfo(num_samples=N, labels=labels))
    model.embedding_dataset = _images()
    return model


# ----------------------------------------------------------------- reference helpers
def _reference_ids(model, space):
    """One image at a time, eval mode, then the same seeded k-means: what the pass must give."""
    model.eval()
    with torch.no_grad():
        rows = []
        for image, _ in model.embedding_dataset:
            out = model(image[None])
            rows.append(out["feats"] if space == "backbone" else out["z"])
    model.train()
    p = model.provider
    labels, centroids, _ = spherical_kmeans(torch.cat(rows).numpy(), p.ks[0], p.iterations, p.seed)
    return compact_clusters(labels, centroids)


# ------------------------------------------------------------------------ unit tests
@pytest.mark.parametrize("space", ["projector", "backbone"])
def test_refresh_clusters_the_dataset_order_embeddings_of_the_chosen_space(cfg_factory, space):
    model = _model(cfg_factory, space=space)
    expected_ids, expected_centroids = _reference_ids(model, space)
    dim = model.features_dim if space == "backbone" else 16
    assert model.provider.centroids.shape == (3, dim)
    metrics = model.refresh_clusters(0)
    assert torch.equal(model.provider.ids, torch.as_tensor(expected_ids))
    torch.testing.assert_close(model.provider.centroids, torch.as_tensor(expected_centroids),
                               atol=1e-5, rtol=0)
    assert int(model.provider.refresh_epoch) == 0
    assert model.provider.num_clusters == int(expected_ids.max()) + 1
    mi, h = slow_mi_and_cond_entropy(expected_ids.tolist(), (np.arange(N) % 4).tolist())
    assert metrics["kmeans_mi"] == pytest.approx(mi, abs=1e-9)
    assert metrics["kmeans_cond_entropy"] == pytest.approx(h, abs=1e-9)
    # the training step looks the new ids up in the provider
    idx = torch.tensor([3, 0, 7])
    assert model.provider(idx).tolist() == expected_ids[[3, 0, 7]].tolist()


def test_refresh_has_no_side_effect_on_modes_or_batchnorm_statistics(cfg_factory):
    model = _model(cfg_factory)
    model.train()
    model.classifier.eval()  # a module deliberately in eval mode stays so
    modes = {name: m.training for name, m in model.named_modules()}
    bn_stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert bn_stats  # the backbone has batch norm: the test can fail
    model.refresh_clusters(0)
    assert {name: m.training for name, m in model.named_modules()} == modes
    for key, value in bn_stats.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_schedule_refreshes_before_epochs_0_period_2period(cfg_factory):
    model = _model(cfg_factory, period=2)
    done = [model.maybe_refresh_clusters(epoch) for epoch in range(5)]
    assert done == [True, False, True, False, True]
    assert int(model.provider.refresh_epoch) == 4
    assert model.maybe_refresh_clusters(4) is False  # already done for this epoch


def test_state_dict_restores_clusters_into_a_fresh_model(cfg_factory):
    model = _model(cfg_factory)
    model.refresh_clusters(0)
    state = model.state_dict()
    assert {"provider.ids", "provider.centroids", "provider.refresh_epoch"} <= set(state)
    assert not any(k.startswith(("cluster_ids", "centroids")) for k in state)  # stored once
    other = _model(cfg_factory)
    assert not other.provider.refreshed
    other.load_state_dict(state)
    assert other.provider.refreshed
    assert torch.equal(other.provider.ids, model.provider.ids)
    assert torch.equal(other.provider.centroids, model.provider.centroids)
    assert other.provider.num_clusters == model.provider.num_clusters
    assert other.maybe_refresh_clusters(0) is False  # restored: no recluster for epoch 0


def test_embedding_dataset_of_the_wrong_size_is_an_error(cfg_factory):
    model = _model(cfg_factory)
    model.embedding_dataset = _images(n=N - 1)
    with pytest.raises(ValueError, match=f"embedding dataset has {N - 1} images, the clusters cover {N}"):
        model.refresh_clusters(0)


def _step_loss(model, idx):
    """(training-step loss, view-major z, probe loss) of a two-view batch, in eval mode."""
    model.eval()
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    g = torch.Generator().manual_seed(2)
    batch = (torch.tensor(idx), [torch.rand(len(idx), 3, 32, 32, generator=g) for _ in range(2)],
             torch.tensor(idx) % 4)
    with torch.no_grad():
        outs = [model(x) for x in batch[1]]
        probe = sum(torch.nn.functional.cross_entropy(o["logits"], batch[2]) for o in outs) / 2
        out = model.training_step(batch, 0)
    loss = out["loss"] if isinstance(out, dict) else out
    return loss, torch.cat([o["z"] for o in outs]), probe


def test_warmup_epochs_train_on_instance_clusters_then_cluster(cfg_factory):
    from clinfonce_plugin.host.runtime.losses import nt_xent_masked

    model = _model(cfg_factory, warmup_epochs=2, period=2)
    assert [model.maybe_refresh_clusters(e) for e in (0, 1)] == [False, False]
    assert not model.provider.refreshed
    idx = [0, 3, 5, 7, 8, 11]
    loss, z, probe = _step_loss(model, idx)
    # instance clusters: SimCLR's NT-Xent, whatever the loss form
    expected = nt_xent_masked(z, torch.tensor(idx).repeat(2), 0.2) + probe
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert [model.maybe_refresh_clusters(e) for e in (2, 3, 4)] == [True, False, True]
    assert int(model.provider.refresh_epoch) == 4


def test_several_k_average_the_loss_over_granularities(cfg_factory):
    from clinfonce_plugin.host.runtime.losses import nt_xent_masked

    cfg = cfg_factory("clinfonce", loss_form="in",
                      clusters={"provider": "kmeans", "k": [3, 6], "nredo": 2})
    torch.manual_seed(0)
    model = host.METHODS["clinfonce"](cfg, sample_info=SampleInfo(num_samples=N,
                                                                  labels=np.arange(N) % 4))
    model.embedding_dataset = _images()
    metrics = model.refresh_clusters(0)
    ids = [model.provider.granularity_ids(m) for m in (0, 1)]
    assert not torch.equal(ids[0], ids[1])  # two clusterings: the test can tell them apart
    for m, suffix in ((0, ""), (1, "_1")):
        mi, h = slow_mi_and_cond_entropy(ids[m].tolist(), (np.arange(N) % 4).tolist())
        assert metrics[f"kmeans_mi{suffix}"] == pytest.approx(mi, abs=1e-9)
        assert metrics[f"kmeans_cond_entropy{suffix}"] == pytest.approx(h, abs=1e-9)
        assert metrics[f"kmeans_num_clusters{suffix}"] == len(torch.unique(ids[m]))
    idx = torch.tensor([1, 2, 4, 9, 13, 17, 19])
    loss, z, probe = _step_loss(model, idx.tolist())
    # form "in" with each granularity's ids is SupCon's loss with those ids as labels
    expected = sum(nt_xent_masked(z, ids[m][idx].repeat(2), 0.2) for m in (0, 1)) / 2 + probe
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


# ------------------------------------------------------------- tiny end-to-end runs
def _cfg(root, out_dir, name, max_epochs, period, resume=None, k=5, warmup_epochs=0):
    cfg = yaml_pretrain_cfg("clinfonce_kmeans_synthetic_cub", "symmetric_32", root, out_dir,
                            max_epochs)
    cfg.name = name
    cfg.method_kwargs.clusters.k = k
    cfg.method_kwargs.clusters.period = period
    cfg.method_kwargs.clusters.warmup_epochs = warmup_epochs
    cfg.resume_from_checkpoint = resume
    return cfg


def _state(ckpt):
    return safe_load(ckpt)["state_dict"]


def _kmeans_rows(ckpt):
    """Rows of the run's metrics.csv that carry the k-means metrics, by epoch."""
    with open(os.path.join(os.path.dirname(ckpt), "logs", "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows and "train_clinfonce_loss_epoch" in rows[0]
    return {int(r["epoch"]): r for r in rows if r.get("kmeans_mi")}


@pytest.mark.slow
def test_pretrain_logs_metrics_and_resume_keeps_clusters_until_the_schedule(tiny_cub, tmp_path):
    from clinfonce_plugin.data.registry import build_dataset
    from clinfonce_plugin.run.pretrain import pretrain

    # 1 epoch, period 2: clustered before epoch 0 only
    first = pretrain(_cfg(tiny_cub, str(tmp_path), "first", 1, 2))
    saved = _state(first)
    assert int(saved["provider.refresh_epoch"]) == 0
    ids = saved["provider.ids"].numpy()
    assert 1 < np.unique(ids).size <= 5 and saved["provider.centroids"].shape == (5, 128)
    logged = _kmeans_rows(first)
    assert list(logged) == [0]
    assert {"kmeans_mi", "kmeans_cond_entropy", "kmeans_num_clusters"} <= set(logged[0])
    _, info, _ = build_dataset("synthetic_cub", tiny_cub, split="train")
    mi, h = slow_mi_and_cond_entropy(ids.tolist(), info.labels.tolist())
    assert float(logged[0]["kmeans_mi"]) == pytest.approx(mi, abs=1e-5)
    assert float(logged[0]["kmeans_cond_entropy"]) == pytest.approx(h, abs=1e-5)
    assert float(logged[0]["kmeans_num_clusters"]) == np.unique(ids).size

    # resumed to 2 epochs: epoch 1 is not on the schedule -> the restored clusters are used
    second = pretrain(_cfg(tiny_cub, str(tmp_path), "second", 2, 2, resume=first))
    state = _state(second)
    assert int(state["provider.refresh_epoch"]) == 0
    assert torch.equal(state["provider.ids"], saved["provider.ids"])
    assert torch.equal(state["provider.centroids"], saved["provider.centroids"])
    assert _kmeans_rows(second) == {}

    # resumed to 3 epochs: reclustered before epoch 2 only
    third = pretrain(_cfg(tiny_cub, str(tmp_path), "third", 3, 2, resume=first))
    assert int(_state(third)["provider.refresh_epoch"]) == 2
    assert list(_kmeans_rows(third)) == [2]


@pytest.mark.slow
def test_warmup_and_several_k_survive_resume(tiny_cub, tmp_path):
    from clinfonce_plugin.run.pretrain import pretrain

    def run(name, epochs, resume=None):
        return pretrain(_cfg(tiny_cub, str(tmp_path), name, epochs, 2, resume=resume, k=[5, 3],
                             warmup_epochs=1))

    # epoch 0 is the warm-up: no k-means yet, every granularity still the instance ids
    warm = run("warm", 1)
    state = _state(warm)
    assert int(state["provider.refresh_epoch"]) == -1
    n = state["provider.ids"].numel()
    for key in ("provider.ids", "provider.ids_1"):
        assert state[key].tolist() == list(range(n))
    assert _kmeans_rows(warm) == {}

    # resumed: clustered before epoch 1 (the end of the warm-up), both granularities
    first = run("first", 2, resume=warm)
    state = _state(first)
    assert int(state["provider.refresh_epoch"]) == 1
    assert state["provider.centroids"].shape == (5, 128)
    assert state["provider.centroids_1"].shape == (3, 128)
    assert 1 < len(torch.unique(state["provider.ids_1"])) <= 3
    logged = _kmeans_rows(first)
    assert list(logged) == [1]
    assert float(logged[1]["kmeans_num_clusters_1"]) == len(torch.unique(state["provider.ids_1"]))
    assert "kmeans_mi_1" in logged[1] and "kmeans_cond_entropy_1" in logged[1]

    # resumed again: epoch 2 is not on the schedule (1 + period 2 = 3): the state is kept
    second = run("second", 3, resume=first)
    kept = _state(second)
    assert int(kept["provider.refresh_epoch"]) == 1
    for key in ("provider.ids", "provider.ids_1", "provider.centroids", "provider.centroids_1"):
        assert torch.equal(kept[key], state[key]), key
    assert _kmeans_rows(second) == {}


@pytest.mark.slow
def test_benchmark_quick_mode_prints_its_tables(capsys):
    # in this process (the imports are paid already); structure only, never timings
    load_bench("kmeans_refresh").main(["--quick"])
    out = capsys.readouterr().out
    assert ("| N | d | k | k-means [s] | pass + k-means [s] | pass [s] | k-means in refresh [s] |"
            in out)
    refresh_rows = [line for line in out.splitlines() if line.startswith("| ") and "|" in line[2:]
                    and line.split("|")[1].strip().isdigit()]
    assert len(refresh_rows) == 2
    for row in refresh_rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 7 and all(float(c) >= 0 for c in cells[3:])
    assert "| run | epochs | epoch [s] (median) | refresh [s] (median) |" in out
    assert "| with refresh (period 1) |" in out and "| without refresh |" in out
    assert "epoch time ratio with / without refresh:" in out
