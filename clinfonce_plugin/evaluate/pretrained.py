"""What every evaluation of a pretrained model reads first: the backbone and its pretrain
config (from the checkpoint), the labelled train and test splits, and the frozen feature
pass (linear, kNN, fine-tuning, the t-SNE pictures)."""
import omegaconf
import torch
import torch.nn as nn
from omegaconf import open_dict
from torch.utils.data import DataLoader

from ..config import saved_pretrain_cfg
from ..data.registry import DATASETS, open_split, require_labels
from ..errors import CheckpointError, ConfigError
from ..host.backbone import make_backbone
from ..run.checkpoints import check_finite, fit_keys, pretrain_args, safe_load, state_dict_of
from ..utils.loading import loader_options, to_device


def load_pretrained_backbone(ckpt_path: str):
    """Backbone rebuilt from the pretrain config (``args.json`` beside the checkpoint, or the
    config a zoo file carries), weights from ``backbone.*`` (loaded weights-only: no code in
    the file runs; non-finite weights are refused)."""
    obj = safe_load(ckpt_path, "pretrained checkpoint")
    pre_cfg = saved_pretrain_cfg(pretrain_args(ckpt_path, obj))
    state = state_dict_of(obj, ckpt_path)
    weights = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not weights:
        raise CheckpointError(f"{ckpt_path} has no 'backbone.*' weights in its state_dict")
    check_finite(weights, ckpt_path)
    backbone, dim = make_backbone(pre_cfg)
    # a checkpoint of the other host names the same network's tensors differently
    weights = fit_keys(weights, backbone.state_dict())
    missing, unexpected = backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{ckpt_path} does not match backbone {pre_cfg.backbone.name!r}: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return backbone, dim, pre_cfg


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset, batch_size: int, workers: int):
    """(features (N, D), targets (N,)) of ``dataset`` on the CPU; the backbone runs in eval
    mode on the device it is on."""
    backbone.eval()
    device = next(backbone.parameters()).device
    feats, targets = [], []
    options = loader_options(workers, cuda=device.type == "cuda", persistent=False)
    for x, y in DataLoader(dataset, batch_size=batch_size, **options):
        feats.append(backbone(to_device(x, device)).cpu())
        targets.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(targets)


# data keys a linear config inherits from the pretrain run when it leaves them unset
INHERITED_DATA_KEYS = ("dataset", "train_path", "val_path", "annotations", "class_list",
                       "split_seed")


def open_labelled_splits(cfg: omegaconf.DictConfig, pre_cfg: omegaconf.DictConfig, use: str):
    """The train and test splits of an evaluation config (``data`` keys it leaves unset are
    the pretrain run's), each refused unless every image has a label (``use`` names the
    evaluation in the message)."""
    with open_dict(cfg):
        for key in INHERITED_DATA_KEYS:  # unset: the pretrain run's value
            if cfg.data.get(key) is None:
                cfg.data[key] = pre_cfg.data.get(key)
        cfg.data.generate = bool(pre_cfg.data.generate)
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {cfg.data.dataset!r}. "
                          f"Choose from {sorted(DATASETS)}")
    train = open_split(cfg.data, "train", verify=True)
    require_labels(train, use, f"the {cfg.data.dataset} train split at {cfg.data.train_path}")
    # the test split is read from data.val_path when set (a separate test folder), else
    # from the root that holds both splits
    test_root = cfg.data.val_path or cfg.data.train_path
    test = open_split(cfg.data, "test", verify=True, root=test_root)
    require_labels(test, use, f"the {cfg.data.dataset} test split at {test_root}")
    return train, test
