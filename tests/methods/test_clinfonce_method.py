"""The clinfonce method: wiring of provider, projector and loss; identities at method level."""
import numpy as np
import pytest
import torch

from clinfonce_plugin import host
from clinfonce_plugin.config import ConfigError
from clinfonce_plugin.clusters.attributes import attribute_cluster_ids
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.host.runtime.losses import nt_xent_masked

N = 12


def _info():
    rng = np.random.default_rng(0)
    return SampleInfo(num_samples=N, labels=np.arange(N) % 3,
                      attributes=rng.integers(0, 2, size=(N, 5)),
                      attribute_names=[f"a{i}" for i in range(5)],
                      class_names=["c0", "c1", "c2"])


def _model(cfg_factory, **kw):
    cfg = cfg_factory("clinfonce", **kw)
    model = host.METHODS["clinfonce"](cfg, sample_info=_info())
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def _batch(idx):
    g = torch.Generator().manual_seed(1)
    b = len(idx)
    return (torch.tensor(idx), [torch.randn(b, 3, 32, 32, generator=g) for _ in range(2)],
            torch.tensor(idx) % 3)


def _loss(model, batch):
    out = model.training_step(batch, 0)
    return out["loss"] if isinstance(out, dict) else out


def _z_and_probe(model, batch):
    with torch.no_grad():
        outs = [model(x) for x in batch[1]]
    probe = sum(torch.nn.functional.cross_entropy(o["logits"], batch[2]) for o in outs) / 2
    return torch.cat([o["z"] for o in outs]), probe


@pytest.mark.parametrize("form", ["out", "in"])
def test_instance_clusters_give_simclr_loss(cfg_factory, form):
    model = _model(cfg_factory, clusters={"provider": "instance"}, loss_form=form).eval()
    batch = _batch([0, 3, 5, 7, 8, 11])
    z, probe = _z_and_probe(model, batch)
    with torch.no_grad():
        loss = _loss(model, batch)
    expected = nt_xent_masked(z, batch[0].repeat(2), 0.2) + probe
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_label_clusters_with_form_in_give_supcon_loss(cfg_factory):
    model = _model(cfg_factory, clusters={"provider": "labels"}, loss_form="in").eval()
    batch = _batch([0, 1, 2, 3, 4, 5, 6, 9])
    z, probe = _z_and_probe(model, batch)
    with torch.no_grad():
        loss = _loss(model, batch)
    expected = nt_xent_masked(z, (batch[0] % 3).repeat(2), 0.2) + probe
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_provider_ids_are_looked_up_by_dataset_index_and_checkpointed_once(cfg_factory):
    model = _model(cfg_factory, clusters={"provider": "attributes", "k": 2}, loss_form="in").eval()
    info = _info()
    expected = attribute_cluster_ids(info.attributes, 2, info.attribute_names)[0]
    state = model.state_dict()
    assert [k for k in state if not k.startswith(("backbone.", "projector.", "classifier."))] \
        == ["provider.ids"]
    assert torch.equal(state["provider.ids"], torch.as_tensor(expected))
    assert model.provider(torch.tensor([4, 0, 9])).tolist() == expected[[4, 0, 9]].tolist()
    # the step's positives are those clusters
    batch = _batch([4, 0, 9, 2, 7, 11])
    z, probe = _z_and_probe(model, batch)
    with torch.no_grad():
        loss = _loss(model, batch)
    ids = torch.as_tensor(expected)[batch[0]].repeat(2)
    assert len(set(ids.tolist())) > 1  # more than one cluster in the batch: the ids matter
    expected_loss = nt_xent_masked(z, ids, 0.2) + probe
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-5)


def test_gradients_reach_backbone_and_every_head(cfg_factory):
    model = _model(cfg_factory, clusters={"provider": "labels"}, instance_head=True)
    _loss(model, _batch(list(range(8)))).backward()
    for name in ("backbone", "projector", "instance_projector", "classifier"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert {"projector", "instance_projector"} <= {g["name"] for g in model.learnable_params}


def test_instance_head_adds_the_instance_loss(cfg_factory):
    torch.manual_seed(0)
    single = _model(cfg_factory, clusters={"provider": "labels"}).eval()
    torch.manual_seed(0)
    dual = _model(cfg_factory, clusters={"provider": "labels"}, instance_head=True,
                  instance_weight=0.5).eval()
    batch = _batch(list(range(8)))
    with torch.no_grad():
        z_inst = torch.cat([dual.instance_projector(dual(x)["feats"]) for x in batch[1]])
        diff = _loss(dual, batch) - _loss(single, batch)
    expected = 0.5 * nt_xent_masked(z_inst, torch.arange(8).repeat(2), 0.2)
    assert diff.item() == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.parametrize("kw, match", [
    ({"projector_dim": 3}, r"method_kwargs.projector_dim: unknown key. Valid keys here: \["),
    ({"clusters": {"provider": "nope"}}, "unknown cluster provider 'nope'"),
    ({"temperature": -1.0}, "temperature must be > 0"),
    ({"loss_form": "sum"}, "loss_form must be 'out' or 'in'"),
])
def test_bad_method_kwargs_fail_before_training(cfg_factory, kw, match):
    cfg = cfg_factory("clinfonce", **kw)
    with pytest.raises((ConfigError, ValueError), match=match):
        host.METHODS["clinfonce"].add_and_assert_specific_cfg(cfg)


def test_bad_provider_params_fail_with_the_valid_ones(cfg_factory):
    with pytest.raises(ValueError, match="k"):
        _model(cfg_factory, clusters={"provider": "attributes", "kk": 3})


def test_mean_positives_counts_other_rows_of_the_same_id():
    from clinfonce_plugin.methods.clinfonce import mean_positives

    ids = torch.tensor([4, 1, 4, 4, 9, 1, 7])
    # rows of 4: 2 others each (3 rows); of 1: 1 each (2 rows); 9 and 7: none
    assert float(mean_positives(ids)) == pytest.approx((3 * 2 + 2 * 1) / 7)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (300,), generator=g)
    ref = sum(int((ids == i).sum()) - 1 for i in ids.tolist()) / 300
    assert float(mean_positives(ids)) == pytest.approx(ref)
