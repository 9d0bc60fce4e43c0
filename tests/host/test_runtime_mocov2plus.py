"""The runtime's MoCo v2+ (``mocov2plus``): its InfoNCE against a loop reference, the tau
schedule and the EMA update against hand-computed cases, the FIFO queue, the method's step
(loss composed from its own outputs, queues filled with the keys, gradients only to the
online modules, queue in the checkpoint), the EMA hooks over steps, accumulation and resume,
and the config checks of the momentum section."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from clinfonce_plugin.host.runtime.losses import moco_infonce
from clinfonce_plugin.host.runtime.momentum import (cosine_tau, ema_update_, enqueue_,
                                                    init_momentum_)


def _loop_moco(q, k, queue, t):
    """-1/N sum_n log(e^{q_n.k_n/t} / (e^{q_n.k_n/t} + sum_j e^{q_n.u_j/t})), one term at a time."""
    total = 0.0
    for n in range(q.shape[0]):
        pos = math.exp(float(q[n] @ k[n]) / t)
        neg = sum(math.exp(float(q[n] @ queue[:, j]) / t) for j in range(queue.shape[1]))
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


@pytest.mark.parametrize("n, d, k, t", [(4, 3, 5, 0.2), (7, 8, 16, 0.07), (1, 2, 1, 1.0)])
def test_moco_infonce_matches_a_loop_reference(n, d, k, t):
    g = torch.Generator().manual_seed(n + d + k)
    def unit(*shape):
        return nn.functional.normalize(torch.randn(*shape, generator=g, dtype=torch.float64),
                                       dim=-1)

    q, key, queue = unit(n, d), unit(n, d), unit(k, d).T
    assert moco_infonce(q, key, queue, t).item() == pytest.approx(_loop_moco(q, key, queue, t),
                                                                  rel=1e-10)


def test_moco_infonce_closed_form_and_gradient_only_to_the_query():
    # every similarity equal: the positive is one of K + 1 equal logits
    q = torch.tensor([[1.0, 0.0]], requires_grad=True)
    key = torch.tensor([[0.0, 1.0]], requires_grad=True)
    queue = torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]]).requires_grad_()
    loss = moco_infonce(q, key, queue, 0.5)
    assert loss.item() == pytest.approx(math.log(4))
    loss.backward()
    assert q.grad is not None and key.grad is None and queue.grad is None


def test_moco_infonce_rejects_bad_inputs():
    with pytest.raises(ValueError, match="Illegal temperature: 0"):
        moco_infonce(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 4), 0)
    with pytest.raises(ValueError, match=r"queue \(D, K\)"):
        moco_infonce(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4, 3), 0.2)


def test_cosine_tau_hand_computed():
    assert cosine_tau(0, 10, 0.99, 0.999) == pytest.approx(0.99)
    assert cosine_tau(10, 10, 0.99, 0.999) == pytest.approx(0.999)
    assert cosine_tau(5, 10, 0.99, 0.999) == pytest.approx(0.9945)  # half way
    # cos(pi / 3) = 1/2: 1 - 0.1 * (1/2 + 1) / 2
    assert cosine_tau(1, 3, 0.9, 1.0) == pytest.approx(0.925)
    with pytest.raises(ValueError, match="base_tau <= final_tau"):
        cosine_tau(0, 10, 0.999, 0.99)


def test_ema_update_hand_computed_and_buffers_untouched():
    online, momentum = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        online.weight.copy_(torch.tensor([1.0, 1.0]))
        momentum.weight.copy_(torch.tensor([0.0, 2.0]))
        online.bias.fill_(4.0)
        momentum.bias.fill_(0.0)
        online.running_mean.fill_(7.0)
    ema_update_(online, momentum, 0.75)
    torch.testing.assert_close(momentum.weight.data, torch.tensor([0.25, 1.75]))
    torch.testing.assert_close(momentum.bias.data, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(momentum.running_mean, torch.zeros(2))  # its own statistics
    torch.testing.assert_close(online.weight.data, torch.tensor([1.0, 1.0]))


def test_init_momentum_copies_and_freezes():
    online, momentum = nn.Linear(3, 2), nn.Linear(3, 2)
    init_momentum_(online, momentum)
    assert torch.equal(online.weight, momentum.weight)
    assert not any(p.requires_grad for p in momentum.parameters())
    assert all(p.requires_grad for p in online.parameters())


def test_queue_is_fifo_and_wraps():
    queue = torch.zeros(2, 1, 5)  # two views, D = 1, K = 5
    ptr = torch.zeros(1, dtype=torch.long)
    entered = []
    for step in range(4):  # 2 keys per step: the 3rd step wraps around the end
        keys = torch.tensor([[10.0 * step], [10.0 * step + 1]])  # (N = 2, D = 1)
        enqueue_(queue, ptr, torch.stack([keys, -keys]))
        entered += [10 * step, 10 * step + 1]
    # the last K = 5 keys that entered, each in slot (its entry number mod K)
    assert ptr.item() == 8 % 5
    expected = [0.0] * 5
    for i, value in enumerate(entered):
        expected[i % 5] = float(value)
    assert queue[0, 0].tolist() == expected == [21.0, 30.0, 31.0, 11.0, 20.0]
    assert queue[1, 0].tolist() == [-v for v in expected]
    assert sorted(queue[0, 0].tolist()) == sorted(map(float, entered[-5:]))


def test_queue_refuses_more_keys_than_slots():
    with pytest.raises(ValueError, match="6 new keys do not fit a queue of 5"):
        enqueue_(torch.zeros(2, 3, 5), torch.zeros(1, dtype=torch.long), torch.zeros(2, 6, 3))
    with pytest.raises(ValueError, match=r"expected \(2, N, 3\)"):
        enqueue_(torch.zeros(2, 3, 5), torch.zeros(1, dtype=torch.long), torch.zeros(2, 4, 2))


def _model(cfg_factory, **kwargs):
    from clinfonce_plugin.host.runtime.methods import MoCoV2Plus  # whichever host is resolved

    kwargs.setdefault("queue_size", 16)
    torch.manual_seed(0)
    model = MoCoV2Plus(cfg_factory("mocov2plus", **kwargs))
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def _batch(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.arange(b), [torch.randn(b, 3, 32, 32, generator=g) for _ in range(2)],
            torch.arange(b) % 5)


def test_mocov2plus_is_registered_with_solo_learns_name():
    from clinfonce_plugin import host
    from clinfonce_plugin.host.runtime.methods import MoCoV2Plus

    if host.HOST_NAME == "runtime":
        assert host.METHODS["mocov2plus"] is MoCoV2Plus
    else:  # solo-learn's own class under its own name
        assert host.METHODS["mocov2plus"] is not MoCoV2Plus


def test_method_step_loss_queue_and_gradients(cfg_factory):
    model = _model(cfg_factory).eval()  # eval: the check forwards give the step's values
    queue0 = model.queue.clone()
    torch.testing.assert_close(queue0.norm(dim=1), torch.ones(2, 16))  # random unit keys
    batch = _batch()
    loss = model.training_step(batch, 0)
    with torch.no_grad():
        q1, q2 = (model(x)["z"] for x in batch[1])
        k1, k2 = (model.momentum_forward(x)["z"] for x in batch[1])
        probe = sum(nn.functional.cross_entropy(model(x)["logits"], batch[2])
                    for x in batch[1]) / 2
    expected = (_loop_moco(q1, k2, queue0[1], 0.2) + _loop_moco(q2, k1, queue0[0], 0.2)) / 2
    assert loss.item() == pytest.approx(expected + probe.item(), rel=1e-5)
    # the keys entered slots 0..5 of each view's queue; the rest is unchanged
    torch.testing.assert_close(model.queue[0, :, :6], k1.T)
    torch.testing.assert_close(model.queue[1, :, :6], k2.T)
    torch.testing.assert_close(model.queue[:, :, 6:], queue0[:, :, 6:])
    assert model.queue_ptr.item() == 6
    loss.backward()
    for name in ("backbone", "projector"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in getattr(model, name).parameters()), name
    for name in ("momentum_backbone", "momentum_projector"):
        assert all(p.grad is None and not p.requires_grad
                   for p in getattr(model, name).parameters()), name
    names = {g["name"] for g in model.learnable_params}
    assert names == {"backbone", "classifier", "projector"}


def test_queue_and_momentum_modules_are_in_the_checkpoint(cfg_factory):
    model = _model(cfg_factory)
    model.training_step(_batch(), 0)
    state = model.state_dict()
    assert {"queue", "queue_ptr"} <= set(state)
    assert any(k.startswith("momentum_backbone.") for k in state)
    assert any(k.startswith("momentum_projector.") for k in state)
    torch.manual_seed(123)
    restored = _model(cfg_factory)
    assert not torch.equal(restored.queue, model.queue)
    restored.load_state_dict(state)
    assert torch.equal(restored.queue, model.queue) and restored.queue_ptr.item() == 6


def _attach(model, global_step, max_steps):
    model._trainer = SimpleNamespace(global_step=global_step,
                                     estimated_stepping_batches=max_steps)


def test_ema_hooks_follow_the_schedule_skip_accumulation_and_resume(cfg_factory):
    model = _model(cfg_factory, queue_size=16)
    model.base_tau = 0.5  # large steps: visible in float32
    model.final_tau = 0.9
    pairs = model.momentum_pairs
    assert [tuple(map(id, p)) for p in pairs] == [
        (id(model.backbone), id(model.momentum_backbone)),
        (id(model.projector), id(model.momentum_projector))]
    online = model.projector[0].weight.detach().clone()
    with torch.no_grad():
        model.momentum_projector[0].weight.zero_()
    S = 4
    _attach(model, 0, S)
    model.on_train_start()
    kept = 1.0  # share of the initial (zero) momentum weight left: prod of the taus used
    for step, optimizer_stepped in [(1, True), (1, False), (2, True), (3, True)]:
        _attach(model, step, S)
        model.on_train_batch_end(None, None, 0)
        if optimizer_stepped:
            kept *= 0.9 - 0.4 * (math.cos(math.pi * (step - 1) / S) + 1) / 2  # tau(step - 1)
        torch.testing.assert_close(model.momentum_projector[0].weight, (1 - kept) * online)
    # taus 0.5, 0.5 + 0.4 * (1 - cos(pi/4)) / 2, 0.7: hand-computed product
    assert kept == pytest.approx(0.5 * (0.5 + 0.2 * (1 - math.sqrt(0.5))) * 0.7)
    # a resumed run: the restored step, then the next update with tau(3)
    with torch.no_grad():
        model.momentum_projector[0].weight.zero_()
    _attach(model, 3, S)
    model.on_train_start()
    _attach(model, 4, S)
    model.on_train_batch_end(None, None, 0)
    tau3 = 0.9 - 0.4 * (math.cos(math.pi * 3 / S) + 1) / 2
    torch.testing.assert_close(model.momentum_projector[0].weight, (1 - tau3) * online)


def test_momentum_modules_start_as_copies(cfg_factory):
    model = _model(cfg_factory)
    for online, momentum in model.momentum_pairs:
        for (n, a), b in zip(online.state_dict().items(), momentum.state_dict().values()):
            assert torch.equal(a, b), n


@pytest.mark.parametrize("change, message", [
    ({"momentum": {"classifier": True}}, "no momentum classifier"),
    ({"momentum": {"base_tau": 0.999, "final_tau": 0.99}}, "must not exceed"),
    ({"data": {"num_large_crops": 2, "num_small_crops": 2}}, "two large crops and no small"),
    ({"method_kwargs": {"queue_size": 0}}, "must be positive"),
])
def test_method_refuses_what_it_cannot_do(cfg_factory, change, message):
    from clinfonce_plugin.config import ConfigError
    from clinfonce_plugin.host.runtime.methods import MoCoV2Plus

    cfg = cfg_factory("mocov2plus", queue_size=16)
    for section, values in change.items():
        for key, value in values.items():
            cfg[section] = cfg.get(section) or {}
            cfg[section][key] = value
    with pytest.raises(ConfigError, match=message):  # one error line at the entry points
        MoCoV2Plus.add_and_assert_specific_cfg(cfg)


def _pretrain_yaml(text):
    from omegaconf import OmegaConf

    base = ("backbone:\n  name: test_resnet\ndata:\n  dataset: synthetic_cub\n  train_path: x\n"
            "optimizer:\n  name: sgd\n  batch_size: 4\n  lr: 0.1\naugmentations:\n"
            "  - crop_size: 32\n    num_crops: 2\n")
    return OmegaConf.create(base + text)


def test_config_momentum_section_only_for_momentum_methods():
    from clinfonce_plugin import host
    from clinfonce_plugin.config import ConfigError, check_pretrain_cfg

    datasets = {"synthetic_cub": 1}
    cfg = check_pretrain_cfg(_pretrain_yaml("method: mocov2plus\nmomentum:\n  final_tau: 0.999\n"),
                             datasets, host.METHODS)
    assert dict(cfg.momentum) == {"base_tau": 0.99, "final_tau": 0.999, "classifier": False}
    with pytest.raises(ConfigError, match="momentum.base_tau: must not exceed momentum.final_tau"):
        check_pretrain_cfg(_pretrain_yaml("method: mocov2plus\nmomentum:\n  base_tau: 0.5\n"
                                          "  final_tau: 0.4\n"), datasets, host.METHODS)
    # another method: absent, or the defaults of a resolved config, is dropped ...
    assert "momentum" not in check_pretrain_cfg(_pretrain_yaml("method: simclr\n"), datasets,
                                                host.METHODS)
    cfg = _pretrain_yaml("method: simclr\nmomentum:\n  base_tau: 0.99\n  final_tau: 1.0\n")
    assert "momentum" not in check_pretrain_cfg(cfg, datasets, host.METHODS)
    # ... anything else is refused
    with pytest.raises(ConfigError, match="momentum.final_tau: method simclr has no momentum "
                                          "encoder"):
        check_pretrain_cfg(_pretrain_yaml("method: simclr\nmomentum:\n  final_tau: 0.999\n"),
                           datasets, host.METHODS)
    with pytest.raises(ConfigError, match="momentum.tau: unknown key"):
        check_pretrain_cfg(_pretrain_yaml("method: mocov2plus\nmomentum:\n  tau: 0.9\n"),
                           datasets, host.METHODS)
