"""mocov2plus end to end on the tiny synthetic CUB with scripts/pretrain/mocov2plus_synthetic_cub
.yaml: one epoch of pretraining through Lightning (EMA updates after the optimizer steps,
queue filled and saved), then the linear evaluation of its checkpoint; and the
momentum backbone after the plugin's changes to the online one (cifar stem, pretrained
weights): the same network, the same weights."""
import json
import os

import lightning.pytorch as pl
import pytest
import torch

from clinfonce_plugin import host
from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import build_method, prepare_cfg, pretrain
from tests.helpers import yaml_linear_cfg, yaml_pretrain_cfg

pytestmark = pytest.mark.skipif("mocov2plus" not in host.METHODS,
                                reason="the host registers no mocov2plus")


def _cfg(root, out, **backbone):
    cfg = yaml_pretrain_cfg("mocov2plus_synthetic_cub", "symmetric_32", root, out, max_epochs=1)
    cfg.method_kwargs.queue_size = 48  # 36 training images: 3 steps of 12 enter
    for key, value in backbone.items():
        cfg.backbone[key] = value
    return cfg


class _StartWeights(pl.Callback):
    """The momentum backbone's weights when training starts."""

    def on_train_start(self, trainer, module):
        self.state = {k: v.clone() for k, v in module.momentum_backbone.state_dict().items()}


@pytest.mark.slow
def test_mocov2plus_pretrain_then_linear(tiny_cub, tmp_path):
    start = _StartWeights()
    ckpt = pretrain(_cfg(tiny_cub, str(tmp_path)), callbacks=[start])
    run_dir = os.path.dirname(ckpt)
    args = json.load(open(os.path.join(run_dir, "args.json")))
    assert args["method"] == "mocov2plus"
    assert args["momentum"] == {"base_tau": 0.99, "final_tau": 0.999, "classifier": False}
    state = safe_load(ckpt)["state_dict"]
    # 3 optimizer steps of 12 images: 36 keys per view entered the queue of 48
    assert state["queue_ptr"].item() == 36
    torch.testing.assert_close(state["queue"].norm(dim=1), torch.ones(2, 48))
    # the EMA moved the momentum conv weights from where they started, not onto the online
    # ones (BatchNorm scales near 1 can round back to 1 in float32 after 3 small steps)
    weights = [k[len("momentum_backbone."):] for k in state
               if k.startswith("momentum_backbone.") and state[k].dim() == 4]
    assert weights
    assert not any(torch.equal(state["momentum_backbone." + k], start.state[k]) for k in weights)
    assert not any(torch.equal(state["momentum_backbone." + k], state["backbone." + k])
                   for k in weights)
    log = open(os.path.join(run_dir, "logs", "metrics.csv")).read().splitlines()[0]
    assert "train_nce_loss_epoch" in log

    res = linear_eval(yaml_linear_cfg("clinfonce_synthetic_cub", ckpt, tiny_cub, max_epochs=2))
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0 and res["num_train"] == 36


def _equal_modules(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_momentum_backbone_follows_the_cifar_stem_and_pretrained_weights(tiny_cub, tmp_path):
    model = build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path), cifar_stem=True)))
    for module in (model.backbone, model.momentum_backbone):
        assert isinstance(getattr(module, "model", module).maxpool, torch.nn.Identity)
    assert _equal_modules(model.backbone, model.momentum_backbone)
    assert not any(p.requires_grad for p in model.momentum_backbone.parameters())
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.momentum_backbone(x), model.backbone(x))

    torch.manual_seed(7)
    source = build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path))))
    path = str(tmp_path / "source.ckpt")
    torch.save({"state_dict": source.state_dict()}, path)
    torch.manual_seed(0)
    model = build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path), pretrained=path)))
    assert _equal_modules(model.backbone, source.backbone)
    assert _equal_modules(model.momentum_backbone, source.backbone)
