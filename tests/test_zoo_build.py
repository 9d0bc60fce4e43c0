"""zoo/build.py: the recipe of each zoo model is bench/quality.py's row, the quick start's
config is the zoo clinfonce model's recipe, and an exported zoo file evaluates on its own."""
import os
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "zoo"))
sys.path.insert(0, os.path.join(REPO, "bench"))

import build  # noqa: E402  (zoo/build.py)
import quality  # noqa: E402


def _plain(cfg):
    return OmegaConf.to_container(cfg, resolve=True)


def test_quick_start_config_is_the_zoo_clinfonce_recipe():
    config, overrides = build.recipe("clinfonce-synthetic_cub", attribute_k=7)
    zoo = _plain(build.compose_pretrain(config, overrides))
    with initialize_config_dir(config_dir=os.path.join(REPO, "scripts/pretrain"),
                               version_base="1.2"):
        quick = _plain(compose(config_name="clinfonce_synthetic_cub_bench"))
    assert zoo.pop("name") == "clinfonce-synthetic_cub"
    assert quick.pop("name") == "clinfonce-synthetic_cub_bench"
    assert quick == zoo
    # and k 7 is what the benchmark's rule chooses on that data
    assert quick["method_kwargs"]["clusters"]["k"] == 7


def test_recipe_is_the_benchmark_row():
    for name, row in build.MODELS.items():
        config, overrides = build.recipe(name, attribute_k=5)
        assert config == quality.SPECS[row][0]
        for extra in quality.SPECS[row][1]:
            assert extra.format(k=5) in overrides
    assert set(build.MODELS.values()) <= set(quality.SPECS)


def test_zoo_settings_are_the_published_benchmark_settings():
    import json

    with open(os.path.join(REPO, "bench/results/quality.json")) as f:
        bench = json.load(f)
    assert (build.EPOCHS, build.BACKBONE, build.BATCH_SIZE, build.LR) == \
        (bench["epochs"], bench["backbone"], bench["batch_size"], bench["lr"])
    assert build.SEED in bench["seeds"]
    for key, value in quality.BENCH_DATA.items():
        assert bench["data"][key] == value


@pytest.mark.slow
def test_exported_file_evaluates_alone_and_compares(tiny_cub, tmp_path, monkeypatch):
    """A run exported as a zoo file: float16 weights of backbone and projector plus the
    config, no args.json needed; ``compare_zoo`` evaluates it exactly as a direct evaluation
    of that file does."""
    from clinfonce_plugin.run import zoo
    from clinfonce_plugin.evaluate.knn import knn_eval
    from clinfonce_plugin.evaluate.linear import linear_eval
    from clinfonce_plugin.run.pretrain import pretrain
    from tests.helpers import yaml_pretrain_cfg

    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", tiny_cub,
                            str(tmp_path / "runs"), max_epochs=1)
    ckpt = pretrain(cfg)
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    facts = build.export(ckpt, "tiny", str(zoo_dir / "tiny.pt"))
    saved = torch.load(zoo_dir / "tiny.pt", weights_only=True)
    run_state = torch.load(ckpt, weights_only=True)["state_dict"]
    kept = {k for k in run_state if k.startswith(("backbone.", "projector."))}
    assert set(saved["state_dict"]) == kept and any(k.startswith("projector.") for k in kept)
    for key in kept:
        if run_state[key].is_floating_point():
            assert saved["state_dict"][key].dtype == torch.float16
            assert torch.equal(saved["state_dict"][key], run_state[key].half())
    assert saved["args"]["method"] == "simclr" and facts["method"] == "simclr"
    assert saved["args"]["checkpoint"]["dir"] == "trained_models"
    assert facts["backbone_parameters"] == sum(
        v.numel() for k, v in run_state.items() if k.startswith("backbone.")
        and v.is_floating_point() and "running_" not in k)

    monkeypatch.setattr(zoo, "ZOO_DIR", str(zoo_dir))
    build.write_manifest({"tiny": {"file": "tiny.pt",
                                   "sha256": zoo.sha256sum(str(zoo_dir / "tiny.pt"))}},
                         str(zoo_dir))

    def linear_cfg(pretrained, **extra):
        return OmegaConf.create({"pretrained": pretrained, "max_epochs": 3, "name": "lin",
                                 "output_dir": str(tmp_path / "out"),
                                 "enable_progress_bar": False,
                                 "data": {"train_path": tiny_cub, "num_workers": 0}, **extra})

    direct = linear_eval(linear_cfg(str(zoo_dir / "tiny.pt")))
    direct_knn = knn_eval(OmegaConf.create({
        "pretrained": str(zoo_dir / "tiny.pt"), "k": [20], "distance_function": ["cosine"],
        "output_dir": str(tmp_path / "out"), "name": "knn",
        "data": {"train_path": tiny_cub, "num_workers": 0}}))
    res = linear_eval(linear_cfg(ckpt, compare_zoo=["tiny"]))
    own, other = res["comparison"]
    assert own["model"] == "this run" and own["linear_top1"] == res["top1"]
    assert other["model"] == "zoo:tiny" and other["method"] == "simclr"
    assert other["linear_top1"] == pytest.approx(direct["top1"])
    k20 = next(r for r in direct_knn["rows"] if r["feature"] == "backbone")
    assert other["knn_top1"] == pytest.approx(k20["top1"])
    # zoo results never land in zoo/: an explicit output_dir here, trained_models/zoo else
    assert sorted(os.listdir(zoo_dir)) == ["manifest.json", "tiny.pt"]
