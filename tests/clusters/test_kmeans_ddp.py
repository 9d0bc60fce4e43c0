"""K-means refresh under DDP: 2 gloo processes, each embedding its shard of the training set,
end with identical ids equal to the single-process result; disagreeing ranks raise."""
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2
N = 30  # not a multiple of the world size: rank 0 embeds 15 images, rank 1 15 (0, 2, ... / 1, 3, ...)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD_SIZE)
    try:
        from clinfonce_plugin.clusters import SampleInfo, build_provider

        result = {}
        # the method: each rank embeds its shard, the gathered matrix is clustered everywhere
        model = _model()
        seen = []
        embed = model._cluster_embedding
        model._cluster_embedding = lambda x: (seen.append(x.shape[0]), embed(x))[1]
        model.refresh_clusters(0)
        result["embedded"] = sum(seen)
        result["ids"] = model.cluster_ids.clone()
        result["centroids"] = model.centroids.clone()

        # the provider: identical input agrees; different input on rank 1 raises everywhere
        x = _blob_embeddings()
        provider = build_provider("kmeans", SampleInfo(num_samples=60), k=3)
        result["provider_ids"] = provider.refresh(x).copy()
        if rank == 1:  # other embeddings on one rank only: the assignments cannot agree
            x = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
        try:
            provider.refresh(x)
            result["raised"] = ""
        except RuntimeError as err:
            result["raised"] = str(err)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_cluster_identically_and_match_one_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]

    single = _model()
    single.refresh_clusters(0)
    for r, res in enumerate(ranks):
        assert res["embedded"] == N // WORLD_SIZE, r  # each rank embedded only its shard
        assert torch.equal(res["ids"], single.cluster_ids), r
        torch.testing.assert_close(res["centroids"], single.centroids, atol=1e-5, rtol=0)
    assert single.num_clusters > 1  # a non-trivial partition was compared

    from clinfonce_plugin.clusters import SampleInfo, build_provider

    expected = build_provider("kmeans", SampleInfo(num_samples=60), k=3).refresh(_blob_embeddings())
    for res in ranks:
        assert np.array_equal(res["provider_ids"], expected)
        assert "differ between ranks" in res["raised"]
