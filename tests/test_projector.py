"""The projector of a pretrained checkpoint (projector.py): for every registered method with a
projector, the rebuilt module computes what the trained method's own ``projector`` computes
(checkpoint of a randomly initialised method, so a wrong or missing weight shows), from a
Lightning-style checkpoint and from a zoo-style file of backbone and projector weights only;
refused with a reason when the checkpoint has no projector or does not fit."""
import copy
import json
import os

import pytest
import torch
from omegaconf import OmegaConf

from clinfonce_plugin import host
from clinfonce_plugin.errors import CheckpointError
from clinfonce_plugin.evaluate.projector import load_pretrained_projector
from clinfonce_plugin.run.pretrain import build_method, prepare_cfg
from tests.helpers import yaml_pretrain_cfg

# method -> (pretrain yaml, augmentations, method_kwargs overrides)
METHODS = {
    "simclr": ("simclr_synthetic_cub", "symmetric_32", {}),
    "supcon": ("supcon_synthetic_cub", "symmetric_32", {}),
    "swav": ("swav_synthetic_cub", "symmetric_32", {}),
    "clinfonce": ("clinfonce_synthetic_cub", "symmetric_32",
                  {"clusters": {"provider": "attributes", "k": 4}}),
    "wcl": ("wcl_synthetic_cub", "wcl_multicrop_32", {}),
    "cmc_attributes": ("cmc_attributes_synthetic_cub", "symmetric_32", {}),
    # solo-learn's own under solo-learn, the runtime's on the runtime
    "mocov2plus": ("mocov2plus_synthetic_cub", "symmetric_32", {"queue_size": 24}),
}


def _pretrain_cfg(method, root, out):
    """The resolved config of a run of ``method`` (what its args.json holds)."""
    yaml_name, augs, kwargs = METHODS[method]
    cfg = yaml_pretrain_cfg(yaml_name, augs, root, out)
    cfg.method = method
    for key, value in kwargs.items():
        cfg.method_kwargs[key] = value
    return prepare_cfg(cfg)


def _write(tmp_path, cfg, state, name="model.ckpt", args_beside=True):
    """A checkpoint file (and args.json beside it) as the pretrain runner leaves them."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    path = str(run / name)
    torch.save({"state_dict": state}, path)
    if args_beside:
        with open(run / "args.json", "w") as f:
            json.dump(OmegaConf.to_container(cfg, resolve=True), f)
    return path


def _trained(method, tiny_cub, tmp_path, seed=7):
    if method not in host.METHODS:
        pytest.skip(f"{method} is not registered by the {host.HOST_NAME} host")
    cfg = _pretrain_cfg(method, tiny_cub, str(tmp_path))
    torch.manual_seed(seed)
    model = build_method(copy.deepcopy(cfg)).eval()
    return cfg, model


@pytest.mark.parametrize("method", sorted(METHODS))
def test_projector_computes_what_the_method_computes(method, tiny_cub, tmp_path):
    cfg, model = _trained(method, tiny_cub, tmp_path)
    path = _write(tmp_path, cfg, model.state_dict())
    torch.manual_seed(0)  # another initialisation: equal outputs need the loaded weights
    projector = load_pretrained_projector(path, OmegaConf.create(
        OmegaConf.to_container(cfg, resolve=True)))
    assert not projector.training
    x = torch.randn(5, model.features_dim)
    with torch.no_grad():
        expected = model.projector(x)
        assert torch.equal(projector(x), expected)
        if method == "wcl":  # g, the instance head; phi is a different function
            assert not torch.allclose(model.weak_projector(x), expected)


def test_projector_from_a_zoo_style_file(tiny_cub, tmp_path):
    """A zoo file keeps backbone.* and projector.* only (no provider buffers, no probe)."""
    cfg, model = _trained("clinfonce", tiny_cub, tmp_path)
    kept = {k: v for k, v in model.state_dict().items()
            if k.startswith(("backbone.", "projector."))}
    assert len(kept) < len(model.state_dict())
    path = _write(tmp_path, cfg, kept, "zoo.pt", args_beside=False)
    projector = load_pretrained_projector(path, cfg)
    x = torch.randn(3, model.features_dim)
    with torch.no_grad():
        assert torch.equal(projector(x), model.projector(x))


def test_a_checkpoint_without_projector_is_refused(tiny_cub, tmp_path):
    cfg, model = _trained("simclr", tiny_cub, tmp_path)
    backbone_only = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    path = _write(tmp_path, cfg, backbone_only)
    with pytest.raises(CheckpointError, match=r"no 'projector\.\*' weights \(method simclr\): "
                                              r"evaluate the backbone alone with "
                                              r"feature_type=\[backbone\]"):
        load_pretrained_projector(path, cfg)


def test_cluster_ce_has_no_projector(tiny_cub, tmp_path):
    cfg = yaml_pretrain_cfg("cluster_ce_synthetic_cub", "symmetric_32", tiny_cub, str(tmp_path))
    del cfg.method_kwargs["proj_hidden_dim"]  # cluster_ce has no projector to size
    cfg = prepare_cfg(cfg)
    model = build_method(copy.deepcopy(cfg))
    path = _write(tmp_path, cfg, model.state_dict())
    with pytest.raises(CheckpointError, match="no 'projector.*' weights .method cluster_ce."):
        load_pretrained_projector(path, cfg)


def test_a_projector_of_another_shape_is_named(tiny_cub, tmp_path):
    cfg, model = _trained("simclr", tiny_cub, tmp_path)
    path = _write(tmp_path, cfg, model.state_dict())
    other = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    other.method_kwargs.proj_output_dim = 64
    with pytest.raises(CheckpointError) as err:
        load_pretrained_projector(path, other)
    message = str(err.value)
    assert "does not fit the projector of method 'simclr'" in message
    assert "0 missing keys" in message and "2 of another shape ['2.weight', '2.bias']" in message


def test_an_unregistered_method_is_named(tiny_cub, tmp_path):
    cfg, model = _trained("simclr", tiny_cub, tmp_path)
    path = _write(tmp_path, cfg, model.state_dict())
    other = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    other.method = "byol_of_the_future"
    with pytest.raises(CheckpointError, match="method 'byol_of_the_future', which the .* host "
                                              "does not register"):
        load_pretrained_projector(path, other)
    assert os.path.isfile(path)
