"""solo-learn's online kNN (``knn_eval``): its config keys and checks; the keys reach
solo-learn's own BaseMethod unchanged; on the bundled runtime the logged val_knn_acc1/5 of a
short run equal the weighted kNN recomputed on features that main_linear's loader extracts
from the final checkpoint (DDP: test_online_knn_ddp.py)."""
import csv
import os

import pytest
from omegaconf import OmegaConf

from clinfonce_plugin import host
from clinfonce_plugin.config import ConfigError, check_pretrain_cfg
from clinfonce_plugin.data.indexed import TransformedImages
from clinfonce_plugin.data.transforms import eval_transform
from clinfonce_plugin.evaluate.pretrained import extract_features, load_pretrained_backbone
from clinfonce_plugin.data.registry import open_split
from clinfonce_plugin.metrics.knn import weighted_knn_accuracy
from clinfonce_plugin.run.pretrain import build_method, prepare_cfg, pretrain
from tests.helpers import yaml_pretrain_cfg

RUNTIME = host.HOST_NAME == "runtime"


def _cfg(root, out, val=True, **knn):
    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", root, out)
    cfg.data.val_path = root if val else None
    cfg.knn_eval = knn
    return cfg


# --- config -------------------------------------------------------------------------

def test_knn_eval_defaults_are_solo_learns(tiny_cub, tmp_path):
    cfg = check_pretrain_cfg(_cfg(tiny_cub, str(tmp_path), val=False), {"synthetic_cub"},
                             host.METHODS)
    assert OmegaConf.to_container(cfg.knn_eval) == {"enabled": False, "k": 20,
                                                    "distance_func": "euclidean"}


@pytest.mark.parametrize("knn,val,message", [
    ({"enabled": True}, False, "knn_eval.enabled: the online kNN classifies the validation "
                               "split: set data.val_path"),
    ({"distance_func": "l1"}, True, r"knn_eval.distance_func: expected one of \['cosine', "
                                    r"'euclidean'\], got 'l1'"),
    ({"k": 0}, True, "knn_eval.k: expected a value >= 1, got 0"),
    ({"T": 0.1}, True, "knn_eval.T: unknown key"),
])
def test_knn_eval_checks(tiny_cub, tmp_path, knn, val, message):
    with pytest.raises(ConfigError, match=message):
        check_pretrain_cfg(_cfg(tiny_cub, str(tmp_path), val=val, **knn), {"synthetic_cub"},
                           host.METHODS)


# --- the host receives the keys -----------------------------------------------------

@pytest.mark.skipif(RUNTIME, reason="solo-learn's own online kNN")
def test_solo_learn_gets_the_keys_unchanged(tiny_cub, tmp_path):
    cfg = prepare_cfg(_cfg(tiny_cub, str(tmp_path), enabled=True, k=7, distance_func="cosine"))
    model = build_method(cfg)
    assert model.knn_eval is True and model.knn_k == 7
    assert model.knn.k == 7 and model.knn.distance_fx == "cosine" and model.knn.T == 0.07


@pytest.mark.skipif(not RUNTIME, reason="the bundled runtime's online kNN")
def test_runtime_gets_the_keys(tiny_cub, tmp_path):
    cfg = prepare_cfg(_cfg(tiny_cub, str(tmp_path), enabled=True, k=7, distance_func="cosine"))
    model = build_method(cfg)
    assert (model.knn_eval, model.knn_k, model.knn_distance) == (True, 7, "cosine")
    assert model.knn_splits is None  # the runner's to set
    off = build_method(prepare_cfg(_cfg(tiny_cub, str(tmp_path / "off"))))
    assert off.knn_eval is False and not hasattr(off, "knn_splits")


# --- a run ----------------------------------------------------------------------------

def _logged(ckpt):
    with open(os.path.join(os.path.dirname(ckpt), "logs", "metrics.csv"), newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("val_knn_acc1")]


@pytest.mark.slow
def test_logged_knn_equals_the_knn_of_the_final_model(tiny_cub, tmp_path):
    cfg = _cfg(tiny_cub, str(tmp_path), enabled=True, k=5, distance_func="cosine")
    cfg.max_epochs = 2
    ckpt = pretrain(cfg)
    rows = _logged(ckpt)
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # every validation epoch
    acc1, acc5 = float(rows[-1]["val_knn_acc1"]), float(rows[-1]["val_knn_acc5"])
    assert 0.0 <= acc1 <= acc5 <= 100.0
    if not RUNTIME:
        return  # solo-learn's classifier votes with the training steps' augmented features
    # reference: the final checkpoint's backbone through main_linear's loader and feature
    # pass (another backbone instance, other batches), then the classifier
    backbone, _, pre = load_pretrained_backbone(ckpt)
    feats = {}
    for split in ("train", "test"):
        opened = open_split(pre.data, split)
        feats[split] = extract_features(backbone, TransformedImages(opened.dataset,
                                                                    eval_transform(pre)), 64, 0)
    (x_tr, y_tr), (x_te, y_te) = feats["train"], feats["test"]
    ref1, ref5 = weighted_knn_accuracy(x_tr, y_tr, x_te, y_te, [5], "cosine", 0.07, 6,
                                       10**6)[5]
    # 36 validation images: whole images, so equal features give equal counts
    assert acc1 == pytest.approx(ref1, abs=1e-4) and acc5 == pytest.approx(ref5, abs=1e-4)
