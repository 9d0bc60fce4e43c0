"""python -m clinfonce_plugin.select_k: the k sweep of Cl-InfoNCE Fig. 4 on a config's training
split, printed as a table with the chosen k marked and drawn as a PNG."""
import importlib.util
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from clinfonce_plugin.config import ConfigError
from clinfonce_plugin.evaluate.select_k import run_select_k
from clinfonce_plugin.select_k import CONFIG_DIR
from tests.helpers import slow_mi_and_cond_entropy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cub_fixture_writer():
    """``write_cub_tree`` of tests/data/conftest.py (the hand-specified tiny official-layout
    CUB), loaded by path under its own module name."""
    path = os.path.join(REPO, "tests", "data", "conftest.py")
    spec = importlib.util.spec_from_file_location("cub_fixture_writer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_cub_tree


def _compose(config_name, overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.2"):
        return compose(config_name=config_name, overrides=overrides)


def _table_rows(text):
    """{k: (cells, chosen)} of the printed markdown table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():
            rows[int(cells[0])] = (cells, "<- chosen" in line)
    return rows


def _check_png(path):
    assert os.path.isfile(path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= 300 and image.size[1] >= 200
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 10  # curves, text and axes, not a blank canvas


def test_tiny_cub_fixture_gives_the_hand_computed_sweep(tmp_path, capsys):
    tree = _cub_fixture_writer()(tmp_path)
    out_png = tmp_path / "plots" / "fig4.png"
    cfg = _compose("clinfonce_cub.yaml", [f"data.train_path={tree.root}",
                                          f"+select_k.output={out_png}"])
    result = run_select_k(cfg)
    # train images 1, 3, 4: labels (0, 1, 1); is_present rows (1,0,0,1), (1,0,1,0), (0,0,0,0).
    # Ranking (entropy desc., ties by column): a0, a2, a3 (h(1/3) each), a1 (constant).
    # k=1 on a0: clusters {1,3}, {4}:  H(T|Z) = 2/3, I = h(1/3) - 2/3, H(Z|T) = 2/3.
    # k>=2: three singletons: I = H(T) = h(1/3), H(Z|T) = log2(3) - h(1/3) = 2/3.
    h13 = -(1 / 3) * math.log2(1 / 3) - (2 / 3) * math.log2(2 / 3)
    assert result.ks.tolist() == [1, 2, 3, 4]  # default: 1 .. min(B, 20) with B = 4 columns
    np.testing.assert_allclose(result.mi, [h13 - 2 / 3, h13, h13, h13], atol=1e-12)
    np.testing.assert_allclose(result.cond_ent, [2 / 3] * 4, atol=1e-12)
    assert result.num_clusters.tolist() == [2, 3, 3, 3]
    # normalised I = (0, 1, 1, 1); flat H -> 0.5 everywhere; first crossing at k = 2
    assert result.chosen_k == 2 and result.rule == "crossing"

    printed = capsys.readouterr().out
    rows = _table_rows(printed)
    assert sorted(rows) == [1, 2, 3, 4]
    assert [k for k, (_, chosen) in rows.items() if chosen] == [2]
    assert float(rows[1][0][2]) == pytest.approx(h13 - 2 / 3, abs=1e-4)
    assert "chosen k = 2 (crossing)" in printed and "method_kwargs.clusters.k=2" in printed
    _check_png(out_png)


def test_select_k_options_are_checked(tmp_path):
    tree = _cub_fixture_writer()(tmp_path)
    cfg = _compose("clinfonce_cub.yaml", [f"data.train_path={tree.root}", "+select_k.kz=[1]"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['kz'\] in select_k"):
        run_select_k(cfg)
    cfg = _compose("clinfonce_cub.yaml", [f"data.train_path={tree.root}", "+select_k.ks=[1,5]"])
    with pytest.raises(ValueError, match=r"\[5\] out of range.*4 binary attribute columns"):
        run_select_k(cfg)
    cfg = _compose("clinfonce_cub.yaml", [f"data.train_path={tree.root}", "+select_k.ks=[]"])
    with pytest.raises(ConfigError, match="non-empty list of integers"):
        run_select_k(cfg)


@pytest.mark.slow
def test_command_line_on_synthetic_cub_prints_table_and_writes_png(tmp_path):
    from clinfonce_plugin.clusters.attributes import attribute_cluster_ids
    from clinfonce_plugin.data.cub import read_cub
    from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

    root = tmp_path / "synthetic_cub"
    generate_synthetic_cub(root, seed=0, num_classes=6, images_per_class=12)
    out_png = tmp_path / "fig4.png"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "clinfonce_plugin.select_k", "--config-name",
         "clinfonce_synthetic_cub.yaml", f"data.train_path={root}", f"+select_k.output={out_png}"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _table_rows(proc.stdout)
    assert sorted(rows) == list(range(1, 21))  # 31 binary attributes: default k = 1 .. 20
    chosen = [k for k, (_, is_chosen) in rows.items() if is_chosen]
    assert len(chosen) == 1
    assert re.search(rf"chosen k = {chosen[0]} \((crossing|closest)\)", proc.stdout)
    _check_png(str(out_png))

    # the printed I and H(Z|T) are those of the top-k attribute clusters of the train split
    info = read_cub(root).sample_info("train")
    for k in (1, 3, 8, 20):
        z = attribute_cluster_ids(info.attributes, k, info.attribute_names)[0]
        mi, h = slow_mi_and_cond_entropy(z.tolist(), info.labels.tolist())
        assert float(rows[k][0][2]) == pytest.approx(mi, abs=1e-4)
        assert float(rows[k][0][3]) == pytest.approx(h, abs=1e-4)


# ----------------------------------------------------------------------------- hierarchy levels
def test_level_sweep_on_a_tiny_tree_by_hand():
    from clinfonce_plugin.clusters.sample_info import SampleInfo
    from clinfonce_plugin.metrics.information import entropy
    from clinfonce_plugin.metrics.k_selection import format_table, select_k
    from clinfonce_plugin.evaluate.select_k import level_sweep

    # A -> x, A -> y, B -> z; samples x, x, y, z; a virtual root sits above A and B
    info = SampleInfo(num_samples=4, labels=np.array([0, 0, 1, 2]), class_names=["x", "y", "z"],
                      hierarchy=[("A", "x"), ("A", "y"), ("B", "z")])
    sweep = level_sweep(info, {"provider": "hierarchy", "level": 2}, None, "toy")
    assert sweep.parameter == "level" and sweep.values == [1, 2, 3]
    result = select_k(sweep.cluster_ids, info.labels, sweep.values, parameter="level")
    # level 1: one cluster, I = H(Z) = 0; level 2: A 3/4, B 1/4 -> I = H(Z) = h(1/4);
    # level 3: Z = T with p = (1/2, 1/4, 1/4) -> I = H(T) = 1.5. A tree makes Z a function
    # of T, so H(Z|T) = 0 at every level.
    h14 = -(1 / 4) * math.log2(1 / 4) - (3 / 4) * math.log2(3 / 4)
    np.testing.assert_allclose(result.mi, [0.0, h14, 1.5], atol=1e-12)
    np.testing.assert_allclose(result.cond_ent, [0.0, 0.0, 0.0], atol=1e-12)
    assert result.num_clusters.tolist() == [1, 2, 3]
    for level, mi, h in zip(result.ks, result.mi, result.cond_ent):
        z = sweep.cluster_ids(int(level))
        assert mi == pytest.approx(entropy(z) - h, abs=1e-12)  # I = H(Z) - H(Z|T)
    # normalised I = (0, h14 / 1.5, 1), flat -H -> 0.5: the first crossing is level 2
    assert result.chosen_k == 2 and result.rule == "crossing"
    assert format_table(result).startswith("| level | clusters |")


def test_level_sweep_with_unknown_labels_and_a_pairs_list():
    from clinfonce_plugin.clusters.sample_info import SampleInfo
    from clinfonce_plugin.metrics.k_selection import select_k
    from clinfonce_plugin.evaluate.select_k import level_sweep

    # r -> a -> {x, y}, r -> z; the unknown (-1) sample is left out of I and H
    info = SampleInfo(num_samples=5, labels=np.array([0, 1, 2, 2, -1]),
                      class_names=["x", "y", "z"])
    pairs = [["r", "a"], ["a", "x"], ["a", "y"], ["r", "z"]]
    sweep = level_sweep(info, {"pairs": pairs}, [3, 2], "toy")
    result = select_k(sweep.cluster_ids, info.labels, sweep.values, parameter="level")
    # level 2: a 2/4, z 2/4 -> 1 bit; level 3: x, y, z = 1/4, 1/4, 1/2 -> 1.5 bits
    assert result.ks.tolist() == [2, 3]
    np.testing.assert_allclose(result.mi, [1.0, 1.5], atol=1e-12)
    slow = slow_mi_and_cond_entropy(sweep.cluster_ids(3)[:4].tolist(), [0, 1, 2, 2])
    assert slow == pytest.approx((1.5, 0.0), abs=1e-12)
    with pytest.raises(ConfigError, match=r"select_k.levels: \[4\] out of range; the deepest "
                                          r"class of the toy training split sits at level 3"):
        level_sweep(info, {"pairs": pairs}, [1, 4], "toy")


def _cifar100_writer():
    path = os.path.join(REPO, "tests", "data", "test_cifar_reader.py")
    spec = importlib.util.spec_from_file_location("cifar_fixture_writer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_cifar100


def test_select_k_options_follow_the_provider(tmp_path):
    root, _ = _cifar100_writer()(tmp_path)
    cfg = _compose("clinfonce_hierarchy_cifar100.yaml", [f"data.train_path={root}",
                                                         "+select_k.ks=[1,2]"])
    with pytest.raises(ConfigError, match=r"select_k.ks does not apply: the config's cluster "
                                          r"provider is 'hierarchy'.*select_k.levels"):
        run_select_k(cfg)
    tree = _cub_fixture_writer()(tmp_path)
    cfg = _compose("clinfonce_cub.yaml", [f"data.train_path={tree.root}", "+select_k.levels=[1]"])
    with pytest.raises(ConfigError, match=r"select_k.levels does not apply.*'attributes'"):
        run_select_k(cfg)


@pytest.mark.slow
def test_command_line_sweeps_the_cifar100_superclass_levels(tmp_path):
    root, splits = _cifar100_writer()(tmp_path)
    out_png = tmp_path / "fig6.png"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "clinfonce_plugin.select_k", "--config-name",
         "clinfonce_hierarchy_cifar100.yaml", f"data.train_path={root}",
         f"+select_k.output={out_png}"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the fixture's train split: fine (1, 8, 15, 22) in superclasses (0, 1, 3, 4): four
    # singleton classes in four superclasses. Level 1 (virtual root): 1 cluster, I = 0;
    # levels 2 and 3: 4 clusters, I = H(T) = 2 bits; H(Z|T) = 0 everywhere
    assert splits["train"][1] == [1, 8, 15, 22] and splits["train"][2] == [0, 1, 3, 4]
    rows = _table_rows(proc.stdout)
    assert sorted(rows) == [1, 2, 3]
    assert [rows[level][0][1] for level in (1, 2, 3)] == ["1", "4", "4"]
    assert [float(rows[level][0][2]) for level in (1, 2, 3)] == [0.0, 2.0, 2.0]
    assert [float(rows[level][0][3]) for level in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert "| level | clusters |" in proc.stdout
    assert "chosen level = 2 (crossing)" in proc.stdout
    assert "method_kwargs.clusters.level=2" in proc.stdout
    _check_png(str(out_png))
