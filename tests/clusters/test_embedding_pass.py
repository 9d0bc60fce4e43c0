"""The embedding pass of dynamic providers (one process) and the label metrics of its result."""
import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.embedding_pass import embed_dataset, label_metrics, shard_indexes
from clinfonce_plugin.data.indexed import TransformedImages
from tests.helpers import slow_mi_and_cond_entropy


def test_label_metrics_ignore_unknown_labels_and_match_a_loop_reference():
    ids = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1])
    labels = np.array([0, 0, 1, 1, 1, -1, 2, -1, 0])
    out = label_metrics(ids, labels)
    keep = labels != -1
    mi, h = slow_mi_and_cond_entropy(ids[keep].tolist(), labels[keep].tolist())
    assert out["kmeans_mi"] == pytest.approx(mi, abs=1e-12)
    assert out["kmeans_cond_entropy"] == pytest.approx(h, abs=1e-12)
    assert out["kmeans_num_clusters"] == 3
    # known pairs: cluster 0 -> labels 0,0; cluster 1 -> 1,1,0; cluster 2 -> 1,2: majorities 2+2+1
    assert out["kmeans_purity"] == pytest.approx(5 / 7)
    assert set(label_metrics(ids, None)) == {"kmeans_num_clusters"}
    assert set(label_metrics(ids, np.full(9, -1))) == {"kmeans_num_clusters"}


def test_shards_cover_every_index_once():
    assert list(shard_indexes(7, 0, 3)) == [0, 3, 6]
    assert list(shard_indexes(7, 2, 3)) == [2, 5]
    assert sorted(i for r in range(3) for i in shard_indexes(7, r, 3)) == list(range(7))


def test_one_process_pass_returns_the_rows_in_dataset_order():
    images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).repeat(1, 3, 2, 2)
    base = torch.utils.data.TensorDataset(images, torch.zeros(10))
    dataset = TransformedImages(base, lambda x: x * 2)  # the transform is applied per item
    embed = lambda x: torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)  # noqa: E731
    out = embed_dataset(embed, dataset, dim=2, batch_size=3)
    expected = torch.stack([torch.arange(10.0) * 2, -torch.arange(10.0) * 2], 1)
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match=r"expected \(3, 5\) embeddings, got shape \(3, 2\)"):
        embed_dataset(embed, dataset, dim=5, batch_size=3)
