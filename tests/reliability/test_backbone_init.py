"""backbone.pretrained initialises a run's backbone from a checkpoint (issue 14, item 2):
exactly the stored weights, from a Lightning checkpoint or a bare backbone state_dict,
loaded weights-only, refused with a reason when it does not fit; a resumed run keeps its own."""
import os

import pytest
import torch

from clinfonce_plugin.errors import CheckpointError
from clinfonce_plugin.run.pretrain import build_method, prepare_cfg
from tests.helpers import yaml_pretrain_cfg
from tests.reliability.test_checkpoint_loading import WritesAFile


def _cfg(root, out, **backbone):
    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", root, out)
    for key, value in backbone.items():
        cfg.backbone[key] = value
    return cfg


def _source(tiny_cub, tmp_path, seed=123):
    """A checkpoint of another model with the same backbone: its own random weights."""
    torch.manual_seed(seed)
    model = build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path))))
    weights = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    path = str(tmp_path / "source.ckpt")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    return path, weights


def _same(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_backbone_starts_from_the_checkpoint_weights(tiny_cub, tmp_path):
    path, weights = _source(tiny_cub, tmp_path)
    torch.manual_seed(0)
    fresh = build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path))))
    assert not _same(fresh.backbone.state_dict(), weights)  # the test can fail
    torch.manual_seed(0)
    model = build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path), pretrained=path)))
    assert _same(model.backbone.state_dict(), weights)
    # only the backbone: the projector keeps this run's own initialisation
    assert all(torch.equal(model.state_dict()[k], fresh.state_dict()[k])
               for k in model.state_dict() if k.startswith("projector."))


def test_a_bare_backbone_state_dict_works_too(tiny_cub, tmp_path):
    _, weights = _source(tiny_cub, tmp_path)
    path = str(tmp_path / "backbone_only.pt")
    torch.save(weights, path)
    model = build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path), pretrained=path)))
    assert _same(model.backbone.state_dict(), weights)


def test_another_backbone_is_refused_with_the_reason(tiny_cub, tmp_path):
    path, _ = _source(tiny_cub, tmp_path)
    cfg = _cfg(tiny_cub, str(tmp_path), pretrained=path, name="resnet18", cifar_stem=True)
    with pytest.raises(CheckpointError, match=r"backbone.pretrained .*source\.ckpt does not fit "
                                              r"backbone 'resnet18': \d+ missing keys"):
        build_method(prepare_cfg(cfg))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tiny_cub, tmp_path):
    marker = tmp_path / "written_by_the_pickle"
    path = str(tmp_path / "crafted.ckpt")
    torch.save({"state_dict": {}, "extra": WritesAFile(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"refused: it needs arbitrary unpickling"):
        build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path), pretrained=path)))
    assert not marker.exists()


def test_a_resumed_run_does_not_reload_the_initialisation(tiny_cub, tmp_path):
    missing = str(tmp_path / "gone.ckpt")  # would be an error if it were read
    cfg = _cfg(tiny_cub, str(tmp_path), pretrained=missing)
    cfg.resume = True
    build_method(prepare_cfg(cfg))
    with pytest.raises(Exception, match="gone.ckpt"):  # a fresh config: the host adds keys
        build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path), pretrained=missing)))
    assert not os.path.exists(missing)
