"""A config value is read in one place: the config check fills every default of the schema
(clinfonce_plugin/config/schema.py) once, and ``saved_pretrain_cfg`` fills what an older
saved config lacks; the modules that use the resolved config read its keys directly."""
import ast
import os

from omegaconf import OmegaConf

from clinfonce_plugin.config import (AUGMENTATION, EVAL_DATA, FINETUNE, KNN, LINEAR, PLOT,
                                     PRETRAIN, REQUIRED, saved_pretrain_cfg)
from clinfonce_plugin.config.keys import Key

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "clinfonce_plugin")


def _leaves(table, prefix=""):
    for key, spec in table.items():
        if isinstance(spec, dict):
            yield from _leaves(spec, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", spec


def _schema_names():
    names = set()
    for table in (PRETRAIN, AUGMENTATION, EVAL_DATA, LINEAR, FINETUNE, KNN, PLOT):
        for path, _ in _leaves(table):
            names.add(path.rsplit(".", 1)[-1])
    return names


def _refills(path, names):
    """``x.get("<schema key>", <default>)`` and ``select(x, "...<schema key>", <default>)``
    calls of one module: a default given again outside the schema."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        args = node.args
        if name == "get" and len(args) == 2:
            key = args[0]
        elif name == "select" and len(args) == 3:
            key = args[1]
        else:
            continue
        if isinstance(key, ast.Constant) and isinstance(key.value, str) \
                and key.value.rsplit(".", 1)[-1] in names:
            found.append(f"{os.path.relpath(path, PACKAGE)}:{node.lineno} {ast.unparse(node)}")
    return found


# calls the check cannot tell from a config read, each with why
NOT_CONFIG = {"host/runtime/optim.py group.get('name', 'group')": "an optimizer param group"}


def test_no_module_outside_config_gives_a_schema_key_a_default_again():
    names = _schema_names()
    found = []
    for folder, _, files in os.walk(PACKAGE):
        if os.path.relpath(folder, PACKAGE).split(os.sep)[0] == "config":
            continue
        for file in files:
            if file.endswith(".py"):
                found += _refills(os.path.join(folder, file), names)
    found = [f for f in found if f"{f.split(':')[0]} {f.split(' ', 1)[1]}" not in NOT_CONFIG]
    assert found == []


def test_the_check_flags_a_refilled_default(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f(cfg):\n    return cfg.get('channels_last', False), "
                      "select(cfg, 'data.verify_images', 'auto'), cfg.get('unrelated', 1)\n")
    found = _refills(str(module), _schema_names())
    assert [line.split(" ", 1)[0].rsplit(":", 1)[1] for line in found] == ["2", "2"]
    assert "channels_last" in found[0] and "verify_images" in found[1]


def test_saved_config_gets_every_default_it_lacks_and_keeps_what_it_has():
    aug = {"crop_size": 32, "num_crops": 2, "color_jitter": {"prob": 0.5}}
    args = {"method": "simclr", "seed": 3, "backbone": {"name": "resnet18"},
            "data": {"dataset": "cifar10", "train_path": "/d", "verify_images": False},
            "augmentations": [aug], "warmup_augmentations": [dict(aug, crop_size=16)],
            "extra": {"kept": 1}}
    cfg = saved_pretrain_cfg(args)
    given = OmegaConf.create(args)
    for path, spec in _leaves(PRETRAIN):
        if path in ("augmentations", "warmup_augmentations"):
            continue  # the entries: below
        value = OmegaConf.select(cfg, path, throw_on_missing=False)
        if OmegaConf.select(given, path) is not None:
            assert value == OmegaConf.select(given, path), path
        elif spec.default is REQUIRED or not spec.fill:
            assert OmegaConf.select(cfg, path, default="absent") == "absent", path
        else:
            assert value == spec.default, path
    for key, crop in (("augmentations", 32), ("warmup_augmentations", 16)):
        node = cfg[key][0]
        assert node.crop_size == crop and node.color_jitter.prob == 0.5
        for path, spec in _leaves(AUGMENTATION):
            if path in ("crop_size", "num_crops", "color_jitter.prob"):
                continue
            if isinstance(spec, Key) and spec.fill and spec.default is not REQUIRED:
                assert OmegaConf.select(node, path) == spec.default, (key, path)
            else:
                assert OmegaConf.select(node, path, default="absent") == "absent", (key, path)
    assert cfg.extra.kept == 1 and cfg.seed == 3 and cfg.data.verify_images is False
    assert "extra" not in PRETRAIN  # the saved keys the schema does not know are kept

