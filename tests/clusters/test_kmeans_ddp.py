"""K-means refresh under DDP: 2 gloo processes, each embedding its shard of the training set,
end with identical ids equal to the single-process result; disagreeing ranks raise."""
import numpy as np
import torch

from tests.ddp import run_ranks

WORLD_SIZE = 2
N = 30  # not a multiple of the world size: rank 0 embeds 15 images, rank 1 15 (0, 2, ... / 1, 3, ...)


def _images():
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.rand(N, 3, 32, 32, generator=g),
                                          torch.arange(N) % 3)


def _model():
    """The same network in every process (same seed), with an in-memory training set."""
    from clinfonce_plugin import host
    from clinfonce_plugin.clusters.sample_info import SampleInfo
    from tests.conftest import make_cfg

    cfg = make_cfg("clinfonce", clusters={"provider": "kmeans", "k": 4, "seed": 1})
    torch.manual_seed(0)
    model = host.METHODS["clinfonce"](cfg, sample_info=SampleInfo(num_samples=N,
                                                                  labels=np.arange(N) % 3))
    model.embedding_dataset = _images()
    return model


def _blob_embeddings():
    rng = np.random.default_rng(0)
    blob = np.arange(60) % 3
    return (np.eye(5)[blob] + 0.2 * rng.standard_normal((60, 5))).astype(np.float32)


def _blob_provider():
    from clinfonce_plugin.clusters import SampleInfo, build_provider

    return build_provider("kmeans", SampleInfo(num_samples=60), embedding_dims={"projector": 5},
                          k=3)


def _worker(rank: int) -> dict:
    from clinfonce_plugin.utils.distributed import all_ranks_agree

    result = {}
    # the method: each rank embeds its shard, the gathered matrix is clustered everywhere
    model = _model()
    seen = []
    embed = model.cluster_embedding
    model.cluster_embedding = lambda x: (seen.append(x.shape[0]), embed(x))[1]
    model.refresh_clusters(0)
    result["embedded"] = sum(seen)
    result["ids"] = model.provider.ids.clone()
    result["centroids"] = model.provider.centroids.clone()

    # the provider: identical input agrees; different input on rank 1 raises everywhere
    x = _blob_embeddings()
    provider = _blob_provider()
    result["provider_ids"] = provider.refresh(x, 0).clone()
    if rank == 1:  # other embeddings on one rank only: the assignments cannot agree
        x = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    try:
        provider.refresh(x, 1)
        result["raised"] = ""
    except RuntimeError as err:
        result["raised"] = str(err)
    result["kept_after_raise"] = (provider.ids.clone(), int(provider.refresh_epoch))

    # the helper itself: equal tensors agree, one differing element (on one rank) does not
    same = torch.tensor([[3, -1], [0, 7]])
    one_off = same.clone()
    if rank == 1:
        one_off[1, 0] = 1
    result["agree"] = (all_ranks_agree(same), all_ranks_agree(one_off),
                       all_ranks_agree(torch.tensor([True, rank == 0])),
                       all_ranks_agree(torch.tensor([0.5, 2.0])))
    return result


def test_two_ranks_cluster_identically_and_match_one_process():
    ranks = run_ranks(_worker, world_size=WORLD_SIZE)

    single = _model()
    single.refresh_clusters(0)
    for r, res in enumerate(ranks):
        assert res["embedded"] == N // WORLD_SIZE, r  # each rank embedded only its shard
        assert torch.equal(res["ids"], single.provider.ids), r
        torch.testing.assert_close(res["centroids"], single.provider.centroids, atol=1e-5, rtol=0)
    assert single.provider.num_clusters > 1  # a non-trivial partition was compared

    expected = _blob_provider().refresh(_blob_embeddings(), 0)
    for res in ranks:
        assert torch.equal(res["provider_ids"], expected)
        assert "differ between ranks" in res["raised"]
        # the failed refresh installed nothing: the clusters of epoch 0 stay
        assert torch.equal(res["kept_after_raise"][0], expected)
        assert res["kept_after_raise"][1] == 0
        assert res["agree"] == (True, False, False, True)
