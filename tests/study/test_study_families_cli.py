"""``python -m clinfonce_plugin.study families`` and the study's bad-input errors: the
family files are what the precomputed provider reads; wrong input gives one ``error:`` line,
exit 2, before anything is written or trained."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from clinfonce_plugin.clusters.families import FAMILIES, build_family
from clinfonce_plugin.clusters.precomputed import PrecomputedProvider
from clinfonce_plugin.data.registry import build_dataset
from clinfonce_plugin.study.__main__ import main
from tests.helpers import REPO, exit_and_errors, slow_mi_and_cond_entropy


def canonical(z):
    _, first, inverse = np.unique(z, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse.reshape(-1)]


def test_family_files_are_read_by_the_precomputed_provider(tiny_cub, tiny_families):
    _, info, _ = build_dataset("synthetic_cub", tiny_cub, split="train")
    labels = np.asarray(info.labels)
    for family in FAMILIES:
        expected = build_family(family, labels)
        path = os.path.join(tiny_families, f"{family}.csv")
        with open(path) as f:
            header = next(csv.reader(f))
        assert header == ["path", "class"] + list(expected)
        for member, z in expected.items():
            ids = PrecomputedProvider(info, file=path, column=member).ids.numpy()
            assert np.array_equal(canonical(ids), canonical(z)), (family, member)
        with open(os.path.join(tiny_families, f"{family}-table.csv")) as f:
            table = list(csv.DictReader(f))
        assert [r["member"] for r in table] == list(expected)
        for r in table:
            mi, h = slow_mi_and_cond_entropy(expected[r["member"]].tolist(), labels.tolist())
            assert float(r["I(Z;T)"]) == pytest.approx(mi, abs=1e-9)
            assert float(r["H(Z|T)"]) == pytest.approx(h, abs=1e-9)


def run_main(capsys, *args):
    """main(args) in this process: (exit code, the stderr lines that start with error:)."""
    return exit_and_errors(main, capsys, *args)


def write_labels(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"]] + rows)


def test_unknown_family_from_the_command_line(tmp_path, tiny_cub):
    out = tmp_path / "fam"
    proc = subprocess.run(
        [sys.executable, "-m", "clinfonce_plugin.study", "families", "--config-name",
         "clinfonce_synthetic_cub", f"data.train_path={tiny_cub}", "--family", "fixed_x",
         "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2
    assert len(errors) == 1 and "unknown family 'fixed_x'" in errors[0], proc.stderr
    assert "fixed_h_zt" in errors[0] and not out.exists()


def test_label_file_that_does_not_match_the_dataset(tmp_path, tiny_cub, capsys):
    _, info, _ = build_dataset("synthetic_cub", tiny_cub, split="train")
    labels = tmp_path / "labels.csv"
    # one image left out, one that the dataset does not have
    write_labels(labels, [[p, 0] for p in info.paths[1:]] + [["images/x/y.jpg", 1]])
    code, errors = run_main(capsys, "families", "--config-name", "clinfonce_synthetic_cub",
                            f"data.train_path={tiny_cub}", "--labels", str(labels),
                            "--out", str(tmp_path / "fam"))
    assert code == 2 and len(errors) == 1
    assert f"--labels {labels} does not match" in errors[0] and "1 of 36" in errors[0]
    assert not (tmp_path / "fam").exists()


def test_family_that_cannot_be_built(tmp_path, tiny_cub, capsys):
    _, info, _ = build_dataset("synthetic_cub", tiny_cub, split="train")
    labels = tmp_path / "labels.csv"
    write_labels(labels, [[p, 7] for p in info.paths])  # a single class
    code, errors = run_main(capsys, "families", "--config-name", "clinfonce_synthetic_cub",
                            f"data.train_path={tiny_cub}", "--labels", str(labels),
                            "--family", "fixed_h_zt", "--out", str(tmp_path / "fam"))
    assert code == 2 and len(errors) == 1
    assert "fixed_h_zt: cannot be built" in errors[0] and "at least 2 classes" in errors[0]
    assert not (tmp_path / "fam").exists()


def test_existing_family_files_are_kept(tmp_path, tiny_cub, capsys):
    out = tmp_path / "fam"
    out.mkdir()
    (out / "fixed_h_zt.csv").write_text("mine")
    code, errors = run_main(capsys, "families", "--config-name", "clinfonce_synthetic_cub",
                            f"data.train_path={tiny_cub}", "--out", str(out))
    assert code == 2 and "exists; pass --overwrite" in errors[0]
    assert (out / "fixed_h_zt.csv").read_text() == "mine"
    assert sorted(os.listdir(out)) == ["fixed_h_zt.csv"]


def test_sweep_with_a_family_file_of_other_images(tmp_path, tiny_cub, tiny_families, capsys):
    other = tmp_path / "other.csv"
    with open(os.path.join(tiny_families, "fixed_h_zt.csv")) as f:
        rows = list(csv.reader(f))
    rows[1][0] = "images/999.Nowhere/Nowhere_0001_1.jpg"  # an image the dataset lacks
    with open(other, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "sweep"
    code, errors = run_main(capsys, "sweep", "--config-name", "clinfonce_synthetic_cub",
                            f"data.train_path={tiny_cub}", "--family-file", str(other),
                            "--out", str(out))
    assert code == 2 and len(errors) == 1
    assert f"--family-file {other} does not match the training split" in errors[0]
    assert not out.exists()  # nothing trained, nothing written


def test_sweep_members_and_providers_are_checked(tmp_path, tiny_cub, tiny_families, capsys):
    family = os.path.join(tiny_families, "fixed_i_zt.csv")
    code, errors = run_main(capsys, "sweep", "--config-name", "clinfonce_synthetic_cub",
                            f"data.train_path={tiny_cub}", "--family-file", family,
                            "--members", "label_gran_9", "--out", str(tmp_path / "a"))
    assert code == 2 and "no member column 'label_gran_9'" in errors[0]
    code, errors = run_main(capsys, "sweep", "--config-name", "clinfonce_synthetic_cub",
                            f"data.train_path={tiny_cub}", "--k", "3", "--out",
                            str(tmp_path / "b"))
    assert code == 2 and "a k sweep needs provider kmeans" in errors[0]
    code, errors = run_main(capsys, "sweep", "--config-name", "clinfonce_kmeans_synthetic_cub",
                            f"data.train_path={tiny_cub}", "--k", "3", "37", "--out",
                            str(tmp_path / "c"))
    assert code == 2 and "[37] out of range" in errors[0] and "2 <= k <= 36" in errors[0]
    code, errors = run_main(capsys, "plot", str(tmp_path / "nothing"), "--out",
                            str(tmp_path / "plots"))
    assert code == 2 and "holds no rows" in errors[0]
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c", "plots"))


def test_documented_configs_and_presets_exist():
    import re

    from clinfonce_plugin.study.__main__ import PRESETS

    with open(os.path.join(REPO, "docs", "study.md")) as f:
        named = set(re.findall(r"--config-name ([a-z0-9]+_[a-z0-9_]+)", f.read()))
    for preset in PRESETS.values():
        named |= {preset["config_name"], preset["kmeans_config_name"]}
    assert {"clinfonce_synthetic_cub_bench", "clinfonce_custom"} <= named
    for name in named:
        assert os.path.isfile(os.path.join(REPO, "scripts", "pretrain", f"{name}.yaml")), name


def test_every_nth_member_keeps_the_last(tiny_families):
    from argparse import Namespace

    from clinfonce_plugin.study.__main__ import _members

    family = os.path.join(tiny_families, "fixed_h_z.csv")
    with open(family) as f:
        members = next(csv.reader(f))[2:]
    assert len(members) == 4 * 6  # 4 members of fixed_i_zt x 6 classes
    got = _members(Namespace(family_file=family, members=None, every=5))
    assert got == members[0:24:5] + [members[-1]]
    got = _members(Namespace(family_file=family, members=["label_gran_0_3"], every=1))
    assert got == ["label_gran_0_3"]
