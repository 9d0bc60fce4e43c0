"""The runtime's online kNN under DDP: 2 gloo processes, each embedding its shard of the
train and validation splits, compute the single-process result, which equals the weighted
kNN of features computed for the whole splits at once; the pass leaves torch's random
generator as it found it."""
import pytest
import torch

from clinfonce_plugin.host.runtime.knn import online_knn_accuracy
from clinfonce_plugin.metrics.knn import weighted_knn_accuracy
from tests.ddp import run_ranks

N_TRAIN, N_VAL = 17, 7  # odd: the ranks' shards differ in size


def _splits():
    g = torch.Generator().manual_seed(0)
    train = torch.utils.data.TensorDataset(torch.rand(N_TRAIN, 3, 8, 8, generator=g),
                                           torch.arange(N_TRAIN) % 3)
    val = torch.utils.data.TensorDataset(torch.rand(N_VAL, 3, 8, 8, generator=g),
                                         torch.arange(N_VAL) % 3)
    labels = torch.arange(N_TRAIN) % 3
    labels[4] = -1  # left out of the vote
    return (train, labels), (val, torch.arange(N_VAL) % 3)


def _backbone():
    torch.manual_seed(0)  # the same network on every rank
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()


def _worker(rank):
    train, val = _splits()
    return {d: online_knn_accuracy(_backbone(), 4, train, val, 3, d, 3, batch_size=2)
            for d in ("cosine", "euclidean")}


def test_every_rank_computes_the_single_process_result():
    train, val = _splits()
    backbone = _backbone()
    state = torch.get_rng_state()
    single = {d: online_knn_accuracy(backbone, 4, train, val, 3, d, 3, batch_size=5)
              for d in ("cosine", "euclidean")}
    # the monitor leaves the training's random stream alone
    assert torch.equal(torch.get_rng_state(), state)
    # independent of the pass: features of the whole splits at once, unknown label dropped
    net = _backbone()
    with torch.no_grad():
        x_tr, x_val = net(train[0].tensors[0]), net(val[0].tensors[0])
    keep = train[1] >= 0
    for d in ("cosine", "euclidean"):
        ref = weighted_knn_accuracy(x_tr[keep], train[1][keep], x_val, val[1], [3], d, 0.07,
                                    3, 10**6)[3]
        assert single[d] == pytest.approx(ref)
    ranks = run_ranks(_worker)
    assert ranks[0] == ranks[1] == single  # whole images: equal counts, equal floats
