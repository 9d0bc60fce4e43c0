"""The pcl method: warm-up on the instance term, the refresh that fills the concentrations,
ProtoNCE over the granularities against independent references, checkpointed state, config
checks."""
import numpy as np
import pytest
import torch

from clinfonce_plugin import host
from clinfonce_plugin.clusters.concentration import concentration
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.config import ConfigError
from clinfonce_plugin.host.runtime.losses import nt_xent_masked
from clinfonce_plugin.losses import prototype_columns
from clinfonce_plugin.methods.pcl import negatives_seed
from tests.losses.test_proto_nce import reference as proto_reference

N = 20


def _images(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.rand(n, 3, 32, 32, generator=g),
                                          torch.arange(n) % 4)


def _model(cfg_factory, num_negatives=16384, **clusters):
    cfg = cfg_factory("pcl", num_negatives=num_negatives,
                      clusters={"provider": "kmeans", "k": [4, 6], "nredo": 2, **clusters})
    cfg.seed = 3
    torch.manual_seed(0)
    model = host.METHODS["pcl"](cfg, sample_info=SampleInfo(num_samples=N,
                                                            labels=np.arange(N) % 4))
    model.embedding_dataset = _images()
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def _step(model, idx):
    """(loss, view-major z, probe loss) of a two-view batch, in eval mode."""
    model.eval()
    g = torch.Generator().manual_seed(2)
    batch = (torch.tensor(idx), [torch.rand(len(idx), 3, 32, 32, generator=g) for _ in range(2)],
             torch.tensor(idx) % 4)
    with torch.no_grad():
        outs = [model(x) for x in batch[1]]
        probe = sum(torch.nn.functional.cross_entropy(o["logits"], batch[2]) for o in outs) / 2
        out = model.training_step(batch, 0)
    loss = out["loss"] if isinstance(out, dict) else out
    return loss, torch.cat([o["z"] for o in outs]), probe


def _embeddings(model):
    """The projector output of every training image, one at a time, in eval mode."""
    model.eval()
    with torch.no_grad():
        rows = [model(image[None])["z"] for image, _ in model.embedding_dataset]
    return torch.cat(rows).numpy()


IDX = [0, 3, 5, 7, 8, 11, 14, 19]


def test_the_warmup_trains_the_instance_term_alone(cfg_factory):
    model = _model(cfg_factory, warmup_epochs=2)
    assert [model.maybe_refresh_clusters(e) for e in (0, 1)] == [False, False]
    loss, z, probe = _step(model, IDX)
    expected = nt_xent_masked(z, torch.tensor(IDX).repeat(2), 0.2) + probe
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert model.maybe_refresh_clusters(2) is True


def test_refresh_fills_each_granularitys_concentration_from_the_same_embeddings(cfg_factory):
    model = _model(cfg_factory)
    x = _embeddings(model)
    metrics = model.refresh_clusters(0)
    for m, suffix in ((0, ""), (1, "_1")):
        k = model.provider.granularity_num_clusters(m)
        expected = concentration(x, model.provider.granularity_ids(m).numpy(),
                                 model.provider.granularity_centroids(m)[:k].numpy(), 0.2)
        got = model.concentration_of(m)
        np.testing.assert_allclose(got[:k].numpy(), expected, rtol=1e-5)
        assert got.shape == (model.provider.ks[m],)
        assert metrics[f"pcl_concentration_min{suffix}"] == pytest.approx(float(expected.min()),
                                                                           rel=1e-5)
        assert f"kmeans_mi{suffix}" in metrics


def test_the_step_is_instance_infonce_plus_the_mean_prototype_term(cfg_factory):
    model = _model(cfg_factory)
    model.refresh_clusters(0)
    loss, z, probe = _step(model, IDX)
    idx = torch.tensor(IDX)
    proto = []
    for m in (0, 1):
        k = model.provider.granularity_num_clusters(m)
        ids = model.provider.granularity_ids(m)[idx].repeat(2)
        proto.append(proto_reference(z, ids, model.provider.granularity_centroids(m)[:k],
                                     model.concentration_of(m)[:k], range(k)))
    expected = nt_xent_masked(z, idx.repeat(2), 0.2).item() + sum(proto) / 2 + probe.item()
    assert loss.item() == pytest.approx(expected, abs=1e-4)


def test_negative_prototypes_are_drawn_from_the_seed_and_the_step(cfg_factory):
    model = _model(cfg_factory, num_negatives=1, k=[12])
    model.refresh_clusters(0)
    loss, z, probe = _step(model, IDX)
    idx = torch.tensor(IDX)
    k = model.provider.granularity_num_clusters(0)
    ids = model.provider.ids[idx]
    assert k - len(torch.unique(ids)) > 1  # more clusters outside the batch than r
    # cfg.seed 3; global step 0 (no trainer)
    generator = torch.Generator().manual_seed(negatives_seed(3, 0, 0))
    columns = prototype_columns(ids, k, 1, generator).nonzero().squeeze(1).tolist()
    assert len(columns) == len(torch.unique(ids)) + 1
    proto = proto_reference(z, ids.repeat(2), model.provider.centroids[:k],
                            model.concentration_of(0)[:k], columns)
    expected = nt_xent_masked(z, idx.repeat(2), 0.2).item() + proto + probe.item()
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    assert negatives_seed(3, 0, 0) != negatives_seed(3, 1, 0) != negatives_seed(3, 0, 1)


def test_gradients_reach_backbone_and_projector(cfg_factory):
    model = _model(cfg_factory)
    model.refresh_clusters(0)
    model.train()
    g = torch.Generator().manual_seed(2)
    batch = (torch.tensor(IDX), [torch.rand(len(IDX), 3, 32, 32, generator=g) for _ in range(2)],
             torch.tensor(IDX) % 4)
    out = model.training_step(batch, 0)
    (out["loss"] if isinstance(out, dict) else out).backward()
    for name in ("backbone", "projector"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name


def test_state_dict_restores_clusters_and_concentrations_into_a_fresh_model(cfg_factory):
    model = _model(cfg_factory)
    model.refresh_clusters(0)
    state = model.state_dict()
    assert {"provider.ids", "provider.ids_1", "provider.centroids", "provider.centroids_1",
            "provider.refresh_epoch", "concentration", "concentration_1"} <= set(state)
    other = _model(cfg_factory)
    assert not torch.equal(other.concentration, model.concentration)
    other.load_state_dict(state)
    for key in ("concentration", "concentration_1", "provider.ids_1", "provider.centroids_1"):
        assert torch.equal(other.state_dict()[key], state[key]), key
    assert other.maybe_refresh_clusters(0) is False
    assert set(other._ddp_params_and_buffers_to_ignore) == {
        "provider.ids", "provider.ids_1", "provider.centroids", "provider.centroids_1",
        "provider.refresh_epoch", "concentration", "concentration_1"}


@pytest.mark.parametrize("kw, match", [
    (dict(clusters={"provider": "attributes", "k": 2}), "provider must be 'kmeans'"),
    (dict(clusters={"provider": "kmeans", "k": 2, "space": "backbone"}),
     "space must be 'projector'"),
    (dict(num_negatives=-1), "num_negatives must be an integer >= 0"),
    (dict(temperature=0.0), "temperature must be > 0"),
])
def test_bad_method_kwargs_fail_before_training(cfg_factory, kw, match):
    cfg = cfg_factory("pcl", **{"clusters": {"provider": "kmeans", "k": 2}, **kw})
    with pytest.raises(ConfigError, match=match):
        host.METHODS["pcl"].add_and_assert_specific_cfg(cfg)
