"""The kmeans provider: spherical k-means with faiss, seeded, compacted ids, validated params,
its buffers (ids, centroids, refresh epoch) and its refresh schedule."""
import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters import CLUSTER_PROVIDERS, REQUIRED, SampleInfo, build_provider
from clinfonce_plugin.clusters.kmeans import (
    KMeansProvider,
    compact_clusters,
    faiss_gpu_available,
    refresh_due,
    spherical_kmeans,
)
from clinfonce_plugin.utils.distributed import all_ranks_agree


def _kmeans(n, d=8, **params):
    """A kmeans provider over n samples clustering d-dimensional projector embeddings."""
    return build_provider("kmeans", SampleInfo(num_samples=n), embedding_dims={"projector": d},
                          **params)


def _blobs(seed=0, num_blobs=5, per_blob=20, d=8, noise=0.1, scale=True):
    """Points around orthogonal unit directions, shuffled; rows optionally rescaled (norms
    must not matter to spherical k-means)."""
    rng = np.random.default_rng(seed)
    blob = np.repeat(np.arange(num_blobs), per_blob)
    x = np.eye(d)[blob] + noise * rng.standard_normal((blob.size, d))
    if scale:
        x *= rng.uniform(0.2, 5.0, size=(blob.size, 1))
    perm = rng.permutation(blob.size)
    return x[perm].astype(np.float32), blob[perm]


def _same_partition(a, b):
    """Slow reference: i ~ j in a iff i ~ j in b, over all pairs."""
    a, b = np.asarray(a), np.asarray(b)
    return all((a[i] == a[j]) == (b[i] == b[j]) for i in range(a.size) for j in range(a.size))


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_registered_as_dynamic_with_its_params():
    assert CLUSTER_PROVIDERS["kmeans"] is KMeansProvider
    assert KMeansProvider.dynamic is True
    assert KMeansProvider.PARAMS == {"k": REQUIRED, "iterations": 20, "seed": 0, "nredo": 1,
                                     "space": "projector", "period": 1, "warmup_epochs": 0,
                                     "device": "auto"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_well_separated_blobs_give_the_blob_partition(seed):
    x, blob = _blobs(seed)
    provider = _kmeans(len(blob), k=5, seed=seed, nredo=5)
    ids = provider.refresh(x, 0).numpy()
    assert provider.num_clusters == 5
    assert _same_partition(ids, blob)
    # spherical k-means fixed point: each centroid is the normalised mean of its unit members
    members = _unit(x.astype(np.float64))
    for c in range(5):
        mean = members[ids == c].mean(axis=0)
        np.testing.assert_allclose(provider.centroids[c].numpy(), mean / np.linalg.norm(mean),
                                   atol=1e-5)


def test_assignment_is_the_largest_inner_product_with_the_centroids():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    labels, centroids, _ = spherical_kmeans(x, 12, iterations=10, seed=4)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    sims = _unit(x.astype(np.float64)) @ centroids.astype(np.float64).T
    for i in range(x.shape[0]):  # loop reference: the chosen centroid is (one of) the best
        assert sims[i, labels[i]] >= sims[i].max() - 1e-5


def test_same_seed_same_result_and_the_seed_matters():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 8)).astype(np.float32)
    first = spherical_kmeans(x, 16, seed=7)
    again = spherical_kmeans(x.copy(), 16, seed=7)
    assert np.array_equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    others = [spherical_kmeans(x, 16, seed=s)[0] for s in (8, 9, 10)]
    assert any(not _same_partition(first[0][:80], o[:80]) for o in others)


def test_thread_count_does_not_change_the_result():
    # faiss runs with torch's thread count; results must not depend on it (DDP ranks on one
    # machine may get different counts)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = spherical_kmeans(x, 40, seed=3)
        torch.set_num_threads(2)
        two = spherical_kmeans(x, 40, seed=3)
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


def test_row_norms_do_not_matter():
    x, _ = _blobs(5, scale=False)
    rescaled = x * np.random.default_rng(6).uniform(0.1, 10.0, size=(x.shape[0], 1))
    a = spherical_kmeans(x, 5, seed=0)[0]
    b = spherical_kmeans(rescaled.astype(np.float32), 5, seed=0)[0]
    assert _same_partition(a, b)


def test_placeholder_until_the_first_refresh_then_contiguous_ids():
    x, blob = _blobs(2)
    provider = _kmeans(len(blob), k=7)
    assert not provider.refreshed and int(provider.refresh_epoch) == -1
    assert provider.centroids.shape == (7, 8) and not provider.centroids.any()
    assert provider.ids.tolist() == list(range(len(blob)))
    assert "placeholder" in provider.describe()
    ids = provider.refresh(torch.from_numpy(x), 3)  # tensors are accepted too
    assert provider.refreshed and int(provider.refresh_epoch) == 3
    assert "placeholder" not in provider.describe()
    assert ids is provider.ids
    assert sorted(np.unique(ids.numpy())) == list(range(provider.num_clusters))
    labels, centroids, _ = spherical_kmeans(x, 7)
    expected_ids, expected_centroids = compact_clusters(labels, centroids)
    assert ids.tolist() == expected_ids.tolist()
    np.testing.assert_array_equal(provider.centroids.numpy(), expected_centroids)


def test_buffers_are_the_state_and_a_fresh_provider_loads_them():
    x, _ = _blobs(3)
    provider = _kmeans(len(x), k=5)
    assert list(provider.state_dict()) == ["ids", "centroids", "refresh_epoch"]
    provider.refresh(x, 2)
    fresh = _kmeans(len(x), k=5)
    fresh.load_state_dict(provider.state_dict())
    assert fresh.refreshed and int(fresh.refresh_epoch) == 2
    assert torch.equal(fresh.ids, provider.ids) and torch.equal(fresh.centroids, provider.centroids)
    assert fresh.num_clusters == provider.num_clusters == 5
    assert not fresh.due(2) and fresh.due(3)  # period 1: kept for epoch 2, reclustered at 3
    with pytest.raises(RuntimeError, match="size mismatch for centroids"):
        _kmeans(len(x), d=4, k=5).load_state_dict(provider.state_dict())


def test_refresh_schedule():
    # (epoch, period, last refresh epoch) -> due
    table = [
        (0, 1, -1, True), (0, 3, -1, True),      # before the first epoch
        (1, 1, 0, True), (1, 2, 0, False), (2, 2, 0, True), (3, 2, 2, False),
        (4, 2, 4, False),                        # resumed inside an epoch already refreshed
        (5, 2, -1, True),                        # never clustered: the placeholder is no clustering
    ]
    for epoch, period, last, due in table:
        assert refresh_due(epoch, period, last) is due, (epoch, period, last)


def test_due_follows_the_refresh_epoch_buffer():
    provider = _kmeans(10, d=2, k=2, period=2)
    x = np.random.default_rng(0).standard_normal((10, 2)).astype(np.float32)
    assert [provider.due(e) for e in range(3)] == [True, True, True]  # never refreshed
    provider.refresh(x, 0)
    assert [provider.due(e) for e in range(5)] == [False, False, True, False, True]
    provider.refresh_epoch.fill_(4)  # e.g. loaded from a run refreshed before epoch 4
    assert [provider.due(e) for e in range(3, 7)] == [False, False, False, True]


def test_compact_clusters_renumbers_used_centroids_and_zero_pads():
    labels = np.array([3, 3, 7, 0, 7])
    centroids = np.arange(8 * 2, dtype=np.float32).reshape(8, 2) + 1
    ids, out = compact_clusters(labels, centroids)
    assert ids.tolist() == [1, 1, 2, 0, 2]
    np.testing.assert_array_equal(out[:3], centroids[[0, 3, 7]])
    assert out.shape == (8, 2) and not out[3:].any()


@pytest.mark.parametrize("params, match", [
    ({}, r"missing required parameter\(s\) \['k'\]"),
    ({"k": 0}, r"'k' must be an integer in \[1, 10\]"),
    ({"k": 11}, r"'k' must be an integer in \[1, 10\]"),
    ({"k": 2, "iterations": 0}, r"'iterations' must be an integer >= 1"),
    ({"k": 2, "period": 0}, r"'period' must be an integer >= 1"),
    ({"k": 2, "seed": -1}, r"'seed' must be an integer in"),
    ({"k": 2, "space": "features"}, r"'space' must be one of \['backbone', 'projector'\]"),
    ({"k": 2, "device": "tpu"}, r"'device' must be one of \['auto', 'cpu', 'gpu'\]"),
    ({"k": 2, "niter": 5}, r"unknown parameter\(s\) \['niter'\]"),
    ({"k": []}, r"'k' must be an integer or a non-empty list of integers, got \[\]"),
    ({"k": [2, 11]}, r"'k\[1\]' must be an integer in \[1, 10\]"),
    ({"k": [2, 1.5]}, r"'k\[1\]' must be an integer in \[1, 10\]"),
    ({"k": 2, "warmup_epochs": -1}, r"'warmup_epochs' must be an integer >= 0"),
    ({"k": 2, "nredo": 0}, r"'nredo' must be an integer >= 1"),
])
def test_bad_params_are_rejected(params, match):
    with pytest.raises(ValueError, match=match):
        _kmeans(10, **params)


@pytest.mark.skipif(faiss_gpu_available(), reason="a GPU is present: device='gpu' is valid")
def test_gpu_device_without_gpu_is_an_error():
    with pytest.raises(ValueError, match="device='gpu' but faiss has no GPU"):
        _kmeans(10, k=2, device="gpu")


def test_bad_embeddings_are_rejected():
    provider = _kmeans(6, d=3, k=2)
    with pytest.raises(ValueError, match=r"expected \(6, 3\) embeddings, got shape \(5, 3\)"):
        provider.refresh(np.ones((5, 3)), 0)
    with pytest.raises(ValueError, match=r"expected \(6, 3\) embeddings, got shape \(6, 4\)"):
        provider.refresh(np.ones((6, 4)), 0)
    bad = np.ones((6, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        provider.refresh(bad, 0)
    assert not provider.refreshed  # a failed refresh installs nothing
    with pytest.raises(ValueError, match="1 <= k <= N"):
        spherical_kmeans(np.ones((3, 2)), 4)


def test_rank_check_agrees_in_one_process():
    assert all_ranks_agree(torch.tensor([0, 1, 1])) is True  # no process group: nothing to compare


def test_embedding_dims_must_name_the_clustered_space():
    with pytest.raises(ValueError, match=r"needs the embedding dimension of space 'backbone'"):
        _kmeans(10, k=2, space="backbone")
    with pytest.raises(ValueError, match=r"needs the embedding dimension of space 'projector'"):
        _kmeans(10, d=0, k=2)


# ------------------------------------------------- the official code's options (issue 16)
def _nested_blobs(seed=0, per_blob=15, noise=0.02):
    """Four tight blobs in two well-separated pairs: k=4 finds the blobs, k=2 the pairs."""
    rng = np.random.default_rng(seed)
    centres = _unit(np.array([[1, 0, 0.3, 0], [1, 0, -0.3, 0], [0, 1, 0, 0.3], [0, 1, 0, -0.3]]))
    blob = np.repeat(np.arange(4), per_blob)
    x = centres[blob] + noise * rng.standard_normal((blob.size, 4))
    perm = rng.permutation(blob.size)
    return x[perm].astype(np.float32), blob[perm]


def test_a_list_of_k_clusters_every_granularity_from_the_same_embeddings():
    x, blob = _nested_blobs()
    provider = _kmeans(len(blob), d=4, k=[4, 2], seed=3, nredo=5)
    assert provider.num_granularities == 2 and provider.ks == (4, 2)
    assert provider.granularity_centroids(1).shape == (2, 4)
    ids = provider.refresh(x, 0)
    assert ids is provider.ids and provider.granularity_ids(0) is provider.ids
    assert _same_partition(provider.granularity_ids(0).numpy(), blob)
    assert _same_partition(provider.granularity_ids(1).numpy(), blob // 2)
    assert [provider.granularity_num_clusters(m) for m in (0, 1)] == [4, 2]
    assert provider.num_clusters == 4
    # granularity m is the seeded k-means of seed + m (the official code: seed m)
    for m, k in enumerate((4, 2)):
        labels, centroids, _ = spherical_kmeans(x, k, seed=3 + m, nredo=5)
        expected_ids, expected_centroids = compact_clusters(labels, centroids)
        assert provider.granularity_ids(m).tolist() == expected_ids.tolist()
        np.testing.assert_array_equal(provider.granularity_centroids(m).numpy(),
                                      expected_centroids)
    assert "k=[4, 2]" in provider.describe() and "[4, 2]" in provider.describe()
    with pytest.raises(IndexError, match="granularity 2 out of range for 2"):
        provider.granularity_ids(2)


def test_every_granularity_is_state_and_a_fresh_provider_loads_it():
    x, _ = _nested_blobs(1)
    provider = _kmeans(len(x), d=4, k=[4, 2], warmup_epochs=2)
    assert list(provider.state_dict()) == ["ids", "centroids", "ids_1", "centroids_1",
                                           "refresh_epoch"]
    provider.refresh(x, 2)
    fresh = _kmeans(len(x), d=4, k=[4, 2], warmup_epochs=2)
    assert fresh.granularity_num_clusters(1) == len(x)  # placeholder: one per image
    fresh.load_state_dict(provider.state_dict())
    for m in (0, 1):
        assert torch.equal(fresh.granularity_ids(m), provider.granularity_ids(m))
        assert torch.equal(fresh.granularity_centroids(m), provider.granularity_centroids(m))
        assert fresh.granularity_num_clusters(m) == provider.granularity_num_clusters(m)
    assert not fresh.due(2) and fresh.due(3)
    with pytest.raises(RuntimeError, match="Missing key.*ids_1"):
        fresh.load_state_dict(_kmeans(len(x), d=4, k=4).state_dict())


def test_the_warmup_trains_on_instance_ids_then_the_schedule_counts_from_its_end():
    provider = _kmeans(12, d=2, k=[3, 2], warmup_epochs=3, period=2)
    for m in (0, 1):
        assert provider.granularity_ids(m).tolist() == list(range(12))
    assert [provider.due(e) for e in range(4)] == [False, False, False, True]
    x = np.random.default_rng(0).standard_normal((12, 2)).astype(np.float32)
    provider.refresh(x, 3)
    assert [provider.due(e) for e in range(3, 8)] == [False, False, True, False, True]
    assert "after 3 warm-up epoch(s)" in provider.describe()


def test_refresh_schedule_with_warmup():
    # (epoch, period, last refresh epoch, warm-up epochs) -> due
    table = [
        (0, 1, -1, 2, False), (1, 1, -1, 2, False), (2, 1, -1, 2, True),  # first after warm-up
        (3, 1, 2, 2, True), (3, 2, 2, 2, False), (4, 2, 2, 2, True),     # period from its end
        (5, 3, -1, 2, True),          # resumed past the warm-up without clusters: due at once
        (2, 2, 2, 2, False),          # resumed inside the refreshed epoch
        (100, 1, -1, 100, True), (99, 1, -1, 100, False),  # the official argparse default
    ]
    for epoch, period, last, warmup, due in table:
        assert refresh_due(epoch, period, last, warmup) is due, (epoch, period, last, warmup)


def test_nredo_keeps_the_best_of_its_runs():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 6)).astype(np.float32)
    objectives = {nredo: spherical_kmeans(x, 20, seed=1, nredo=nredo)[2] for nredo in (1, 5)}
    # the objective is the sum of the points' inner products with their centroids: recompute
    labels, centroids, objective = spherical_kmeans(x, 20, seed=1, nredo=5)
    sims = _unit(x.astype(np.float64)) @ centroids.astype(np.float64).T
    assert objective == pytest.approx(sims[np.arange(500), labels].sum(), rel=1e-4)
    assert objectives[5] > objectives[1]  # the first run is nredo=1's: 4 more can only help
    provider = _kmeans(500, d=6, k=20, seed=1, nredo=5)
    assert provider.refresh(x, 0).tolist() == compact_clusters(labels, centroids)[0].tolist()
