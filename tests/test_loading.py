"""Transfer options of the runners: data.num_workers=auto follows the cores this process may
use, pinned memory and non-blocking copies only for CUDA, persistent workers, and the
channels_last option (model weights and input batches)."""
import os

import pytest
import torch
from omegaconf import OmegaConf

import clinfonce_plugin.run.pretrain as train_module
from clinfonce_plugin import config, host
from clinfonce_plugin.config import ConfigError, check_linear_cfg, check_pretrain_cfg
from clinfonce_plugin.host.method import make_method
from clinfonce_plugin.utils import loading
from tests.helpers import yaml_pretrain_cfg


def _cores(monkeypatch, n):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)),
                        raising=False)


@pytest.mark.parametrize("cores,processes,expected", [
    (1, 1, 1), (2, 1, 2), (6, 1, 6), (8, 1, 8), (64, 1, 8),  # the cap
    (16, 4, 4), (8, 8, 1), (2, 4, 1),                        # shared among the processes
])
def test_auto_workers_share_the_available_cores(monkeypatch, cores, processes, expected):
    _cores(monkeypatch, cores)
    assert config.available_cores() == cores
    assert config.auto_num_workers(processes) == expected


def test_available_cores_without_an_affinity_mask(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert config.available_cores() == 12


@pytest.mark.parametrize("devices,accelerator,expected", [
    (1, "auto", 1), (4, "gpu", 4), ([0, 2], "gpu", 2), ("0,1,3", "gpu", 3), ("2", "cpu", 2),
    ("auto", "cpu", 1), (-1, "cpu", 1),
])
def test_processes_per_machine(devices, accelerator, expected):
    assert config.processes_per_machine(devices, accelerator) == expected


def test_auto_devices_on_a_gpu_count_every_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert config.processes_per_machine("auto", "gpu") == 4
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert config.processes_per_machine(-1, "auto") == 1


PRETRAIN_YAML = """method: simclr
devices: {devices}
backbone:
  name: test_resnet
data:
  dataset: synthetic_cub
  train_path: x
{workers}optimizer:
  name: sgd
  batch_size: 8
  lr: 0.1
augmentations:
  - crop_size: 32
    num_crops: 2
"""


def _pretrain(tmp_path, workers=None, devices=1):
    path = tmp_path / "cfg.yaml"
    line = "" if workers is None else f"  num_workers: {workers}\n"
    path.write_text(PRETRAIN_YAML.format(devices=devices, workers=line))
    return check_pretrain_cfg(OmegaConf.load(path), {"synthetic_cub"}, host.METHODS, str(path))


def test_num_workers_defaults_to_auto_and_is_resolved_on_load(monkeypatch, tmp_path):
    assert config.PRETRAIN["data"]["num_workers"].default == "auto"
    _cores(monkeypatch, 6)
    assert _pretrain(tmp_path).data.num_workers == 6
    assert _pretrain(tmp_path, devices=2).data.num_workers == 3
    assert _pretrain(tmp_path, workers=0).data.num_workers == 0  # a number is kept
    assert _pretrain(tmp_path, workers=3).data.num_workers == 3
    with pytest.raises(ConfigError, match=r"cfg.yaml:8: data.num_workers: expected an "
                                          r"integer >= 0 or auto, got 'many'"):
        _pretrain(tmp_path, workers="many")
    with pytest.raises(ConfigError, match="data.num_workers: expected a value >= 0"):
        _pretrain(tmp_path, workers=-1)


def test_evaluation_num_workers_auto_is_resolved(monkeypatch):
    _cores(monkeypatch, 3)
    cfg = check_linear_cfg(OmegaConf.create({"pretrained": "x.ckpt"}))
    assert cfg.data.num_workers == 3


def test_loader_options_pin_and_persist():
    assert loading.loader_options(0, cuda=False) == {
        "num_workers": 0, "pin_memory": False, "persistent_workers": False}
    assert loading.loader_options(4, cuda=True) == {
        "num_workers": 4, "pin_memory": True, "persistent_workers": True}
    assert loading.loader_options(4, cuda=False, persistent=False)["persistent_workers"] is False
    with pytest.raises(ValueError, match="workers must be >= 0"):
        loading.loader_options(-1, cuda=False)


@pytest.mark.parametrize("accelerator,available,expected", [
    ("auto", True, True), ("gpu", True, True), ("cuda", True, True), ("cpu", True, False),
    ("mps", True, False), ("auto", False, False), ("gpu", False, False),
])
def test_uses_cuda(monkeypatch, accelerator, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert loading.uses_cuda(accelerator) is expected


def test_to_device_is_non_blocking_only_for_cuda():
    calls = []

    class Recorder(torch.Tensor):
        def to(self, device, non_blocking=False):
            calls.append((torch.device(device).type, non_blocking))
            return self

    x = torch.zeros(2).as_subclass(Recorder)
    loading.to_device(x, torch.device("cpu"))
    loading.to_device(x, torch.device("cuda", 0))
    assert calls == [("cpu", False), ("cuda", True)]


def _conv_input_formats(model, x):
    """(weights, input) of the backbone's first convolution are channels-last."""
    conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    seen = {}
    handle = conv.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    fmt = torch.channels_last
    return conv.weight.is_contiguous(memory_format=fmt), seen["x"].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("on", [False, True])
def test_channels_last_converts_the_model_and_each_batch(cfg_factory, on):
    cfg = cfg_factory("simclr")
    cfg.channels_last = on
    # what the host adapter's prepare step sets under solo-learn
    cfg.performance.disable_channel_last = not on
    model = make_method(cfg)
    x = torch.randn(2, 3, 32, 32)
    assert x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    assert _conv_input_formats(model, x) == (on, on)


def test_pretrain_passes_the_transfer_options_and_channels_last(tiny_cub, tmp_path,
                                                                monkeypatch):
    """One pretrain epoch with channels_last: the DataLoaders get the transfer options (no
    pinning on this CPU-only run) and the trained backbone sees channels-last weights and
    batches."""
    loaders, formats = [], []
    real_loader = train_module.DataLoader

    def recording_loader(*args, **kwargs):
        loaders.append(kwargs)
        return real_loader(*args, **kwargs)

    monkeypatch.setattr(train_module, "DataLoader", recording_loader)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    real_make = train_module.make_method

    def recording_make(cfg, sample_info=None):
        model = real_make(cfg, sample_info)
        conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
        fmt = torch.channels_last
        conv.register_forward_pre_hook(lambda m, args: formats.append(
            (conv.weight.is_contiguous(memory_format=fmt),
             args[0].is_contiguous(memory_format=fmt))))
        return model

    monkeypatch.setattr(train_module, "make_method", recording_make)
    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", tiny_cub, str(tmp_path),
                            max_epochs=1)
    cfg.channels_last = True
    cfg.limit_train_batches = 2
    cfg.data.val_path = tiny_cub
    cfg.limit_val_batches = 1
    train_module.pretrain(cfg)
    assert [(o["num_workers"], o["pin_memory"], o["persistent_workers"]) for o in loaders] == \
        [(0, False, False), (0, False, False)]  # the training and the validation loader
    assert formats and all(f == (True, True) for f in formats)
