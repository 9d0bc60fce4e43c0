"""The synthetic CUB generator: layout, determinism, atomic writes and the statistics the
Cl-InfoNCE experiments rely on (computed here with plain numpy)."""
import functools
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinfonce_plugin.data import build_dataset, read_cub
from clinfonce_plugin.data import synthetic_cub
from clinfonce_plugin.data.registry import build_synthetic_cub
from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

DEFAULTS = synthetic_cub.SyntheticCubConfig()
SMALL = dict(num_classes=4, images_per_class=6)


@pytest.fixture(scope="module")
def default_root(tmp_path_factory) -> Path:
    """The default dataset, generated once for this module."""
    return generate_synthetic_cub(tmp_path_factory.mktemp("default") / "synthetic_cub")


@pytest.fixture(scope="module")
def default_data(default_root):
    meta = read_cub(default_root)
    manifest = json.loads((default_root / "synthetic_cub.json").read_text(encoding="utf-8"))
    true = np.load(default_root / "attributes" / "true_attributes.npy")
    return meta, manifest, true


def groups_of(names):
    """{group: [column, ...]} from CUB-style "<group>::<value>" names."""
    groups = defaultdict(list)
    for col, name in enumerate(names):
        groups[name.split("::")[0]].append(col)
    return dict(groups)


def entropy(labels: np.ndarray) -> float:
    _, counts = np.unique(labels, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(z: np.ndarray, y: np.ndarray) -> float:
    """Plug-in I(Z; Y) in nats; z: (N,) or (N, k) discrete, y: (N,)."""
    _, zi = np.unique(z, axis=0, return_inverse=True)
    zi = zi.reshape(-1)
    return entropy(zi) + entropy(y) - entropy(np.stack([zi, y], axis=1))


# ----------------------------------------------------------------------------- layout


def test_default_dataset_reads_back_with_expected_counts(default_root, default_data):
    meta, _, _ = default_data
    n = DEFAULTS.num_classes * DEFAULTS.images_per_class
    assert meta.num_samples == n and meta.num_classes == DEFAULTS.num_classes
    assert 20 <= meta.num_classes <= 50 and 40 <= DEFAULTS.images_per_class <= 60
    assert np.bincount(meta.labels).tolist() == [DEFAULTS.images_per_class] * meta.num_classes
    per_class_train = np.bincount(meta.labels[meta.is_train], minlength=meta.num_classes)
    assert per_class_train.tolist() == [DEFAULTS.images_per_class // 2] * meta.num_classes
    assert meta.attributes.shape == (n, len(meta.attribute_names))
    assert meta.attributes_file.resolve() == (default_root / "attributes.txt").resolve()
    assert set(np.unique(meta.certainties)) == {1, 2, 3, 4}
    assert meta.certainty_names == {1: "not visible", 2: "guessing", 3: "probably", 4: "definitely"}
    for path, label in zip(meta.paths, meta.labels):
        # images/<NNN.Class_Name>/<file>.jpg with the class directory of its label
        assert re.fullmatch(r"images/\d{3}\.[A-Za-z_]+/[A-Za-z_]+_\d{4}_\d+\.jpg", path)
        assert path.split("/")[1] == meta.class_names[label]
    bbox_lines = (default_root / "bounding_boxes.txt").read_text().splitlines()
    assert len(bbox_lines) == n and all(len(line.split()) == 5 for line in bbox_lines)


def test_images_are_32x32_rgb_jpeg(default_root, default_data):
    meta, _, _ = default_data
    for path in meta.paths:
        with Image.open(default_root / path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (32, 32)


def test_attributes_are_cub_style_groups_and_true_values_one_hot(default_data):
    meta, manifest, true = default_data
    assert 30 <= len(meta.attribute_names) <= 60
    assert all(re.fullmatch(r"has_[a-z_]+::[a-z_]+", name) for name in meta.attribute_names)
    groups = groups_of(meta.attribute_names)
    assert {"has_body_color", "has_wing_color", "has_body_pattern", "has_size"} <= set(groups)
    assert list(groups) == list(manifest["attribute_groups"])
    assert true.shape == meta.attributes.shape and true.dtype == np.uint8
    for group, cols in groups.items():
        assert (true[:, cols].sum(axis=1) == 1).all(), group


# ----------------------------------------------------------------------------- statistics


def test_annotation_noise_rate_and_certainty(default_data):
    meta, _, true = default_data
    flipped = meta.attributes != true
    # 55,800 annotations: the standard error of the rate is ~0.0012
    assert abs(flipped.mean() - DEFAULTS.flip_prob) < 0.01
    rate = [flipped[meta.certainties == c].mean() for c in (1, 2, 3, 4)]
    assert rate[0] > rate[1] > rate[2] > rate[3]  # "not visible" errs most, "definitely" least
    for cols in groups_of(meta.attribute_names).values():  # one certainty per question
        assert (meta.certainties[:, cols] == meta.certainties[:, cols[:1]]).all()


def test_true_values_follow_the_class_prototype_with_configured_probability(default_data):
    meta, manifest, true = default_data
    follows = []
    for group, cols in groups_of(meta.attribute_names).items():
        value = [meta.attribute_names[c].split("::")[1] for c in cols]
        proto_col = np.array([cols[value.index(cls["prototype"][group])]
                              for cls in manifest["classes"]])[meta.labels]
        follows.append(true[np.arange(meta.num_samples), proto_col])
    assert abs(np.mean(follows) - DEFAULTS.prototype_prob) < 0.02


def test_classes_sharing_a_prototype_differ_only_in_the_unannotated_cue(default_data):
    meta, manifest, _ = default_data
    by_proto = defaultdict(list)
    for c, cls in enumerate(manifest["classes"]):
        by_proto[cls["prototype_id"]].append(c)
    shared = [cs for cs in by_proto.values() if len(cs) > 1]
    assert sum(len(cs) - 1 for cs in shared) == DEFAULTS.num_classes - round(2 * DEFAULTS.num_classes / 3)
    classes = manifest["classes"]
    for cs in shared:
        assert all(classes[c]["prototype"] == classes[cs[0]]["prototype"] for c in cs)
        assert len({classes[c]["cue"] for c in cs}) == len(cs)
    assert not any(cue in name for cue in manifest["cues"] for name in meta.attribute_names)
    # annotated attribute frequencies of twins agree up to sampling noise; other classes
    # differ by >= 2 prototype groups and so by far more
    means = np.stack([meta.attributes[meta.labels == c].mean(axis=0) for c in range(meta.num_classes)])
    pid = [cls["prototype_id"] for cls in classes]
    twin, other = [], []
    for a in range(meta.num_classes):
        for b in range(a + 1, meta.num_classes):
            (twin if pid[a] == pid[b] else other).append(np.abs(means[a] - means[b]).max())
    assert max(twin) < 0.4 < min(other)


@pytest.mark.parametrize("k", [6, 8])
def test_top_k_entropy_attribute_clusters_carry_part_of_the_label_information(default_data, k):
    meta, _, _ = default_data
    annotated = meta.attributes.astype(np.int64)
    p = annotated[meta.is_train].mean(axis=0)
    binary_entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    top_k = np.argsort(-binary_entropy, kind="stable")[:k]
    mi = mutual_information(annotated[:, top_k], meta.labels)
    h_labels = entropy(meta.labels)
    assert h_labels == pytest.approx(np.log(DEFAULTS.num_classes))
    # well above 0, well below H(labels): the clusters are informative but are not the labels
    assert 0.25 * h_labels < mi < 0.75 * h_labels


def test_linear_classifier_on_raw_pixels_does_not_solve_the_classes(default_root, default_data):
    meta, _, _ = default_data
    x = np.stack([np.asarray(Image.open(default_root / p), dtype=np.float64).ravel() / 255
                  for p in meta.paths])
    x = (x - x[meta.is_train].mean(0)) / (x[meta.is_train].std(0) + 1e-6)
    x = np.hstack([x, np.ones((len(x), 1))])
    onehot = np.eye(meta.num_classes)[meta.labels]
    tr, te = meta.is_train, ~meta.is_train
    gram, cross = x[tr] @ x[tr].T, x[te] @ x[tr].T  # ridge in its dual form: n_train < dims
    best = 0.0
    for lam in (1e2, 1e3, 1e4):  # ridge regression one-vs-rest, the best of a small sweep
        alpha = np.linalg.solve(gram + lam * np.eye(len(gram)), onehot[tr])
        best = max(best, float(((cross @ alpha).argmax(1) == meta.labels[te]).mean()))
    assert best < 0.5


# ----------------------------------------------------------------------------- determinism


def _files(root: Path):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_same_seed_same_bytes_and_pixels_different_seed_differs(tmp_path):
    a = generate_synthetic_cub(tmp_path / "a", seed=3, **SMALL)
    b = generate_synthetic_cub(tmp_path / "b", seed=3, **SMALL)
    c = generate_synthetic_cub(tmp_path / "c", seed=4, **SMALL)
    assert _files(a) == _files(b)
    texts = [f for f in _files(a) if f.suffix in (".txt", ".npy", ".json") or f.name == "README"]
    assert len(texts) == 12
    for rel in texts:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    images = [f for f in _files(a) if f.suffix == ".jpg"]
    assert len(images) == 24
    for rel in images:
        assert np.array_equal(np.asarray(Image.open(a / rel)), np.asarray(Image.open(b / rel)))
    rel = Path("attributes/image_attribute_labels.txt")
    assert (a / rel).read_bytes() != (c / rel).read_bytes()
    pixels = lambda root: np.stack([np.asarray(Image.open(root / p)) for p in read_cub(root).paths])
    assert not np.array_equal(pixels(a), pixels(c))


def test_reuses_a_complete_dataset_with_the_same_parameters(tmp_path):
    root = generate_synthetic_cub(tmp_path / "s", seed=1, **SMALL)
    stamp = (root / "synthetic_cub.json").stat().st_mtime_ns
    inode = root.stat().st_ino
    assert generate_synthetic_cub(tmp_path / "s", seed=1, **SMALL) == root
    assert (root / "synthetic_cub.json").stat().st_mtime_ns == stamp and root.stat().st_ino == inode

    with pytest.raises(ValueError, match=r"exists but is not a synthetic CUB dataset with these parameters"):
        generate_synthetic_cub(root, seed=2, **SMALL)
    generate_synthetic_cub(root, seed=2, overwrite=True, **SMALL)
    manifest = json.loads((root / "synthetic_cub.json").read_text())
    assert manifest["params"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary leftovers


def test_a_manifest_written_before_cue_scale_is_reused_as_cue_scale_1(tmp_path):
    root = generate_synthetic_cub(tmp_path / "s", **SMALL)
    path = root / "synthetic_cub.json"
    manifest = json.loads(path.read_text())
    del manifest["params"]["cue_scale"]
    path.write_text(json.dumps(manifest))
    assert generate_synthetic_cub(root, **SMALL) == root  # reused, not rejected
    with pytest.raises(ValueError, match=r"parameters .* != "):
        generate_synthetic_cub(root, cue_scale=1.6, **SMALL)


@pytest.mark.parametrize("cue", [1, 2])
def test_cue_scale_grows_the_cue_by_its_square(cue):
    """The cue's pixels (its render minus the plain bird's, same image randomness) scale with
    the area factor cue_scale^2; a cue_scale that changed nothing would give ratio 1."""
    def cue_pixels(scale):
        cfg = synthetic_cub.SyntheticCubConfig(cue_scale=scale)
        values = np.array([0, 0, 0, 0, 2, 0, 0])  # round, large, solid: nothing clipped
        with_cue, _ = synthetic_cub._render(cfg, values, cue, 7)
        plain, _ = synthetic_cub._render(cfg, values, 0, 7)
        return int((np.abs(with_cue.astype(int) - plain).max(axis=2) > 60).sum())

    base, bigger = cue_pixels(1.0), cue_pixels(1.5)
    assert base >= 4
    assert 1.5 ** 2 * 0.7 <= bigger / base <= 1.5 ** 2 * 1.4, (base, bigger)


def test_incomplete_dataset_is_not_reused(tmp_path):
    root = generate_synthetic_cub(tmp_path / "s", **SMALL)
    next((root / "images").rglob("*.jpg")).unlink()
    with pytest.raises(ValueError, match=r"\(images missing\)"):
        generate_synthetic_cub(root, **SMALL)


def test_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    calls = []
    render = synthetic_cub._render

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk on fire")
        return render(*args, **kwargs)

    monkeypatch.setattr(synthetic_cub, "_render", failing_render)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_synthetic_cub(tmp_path / "s", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    root = tmp_path / "datasets" / "synthetic_cub"
    synthetic_cub.main(["--root", str(root), "--seed", "2", "--num-classes", "3",
                        "--images-per-class", "4"])
    assert "12 images (6 train), 3 classes" in capsys.readouterr().out
    meta = read_cub(root)
    assert meta.num_samples == 12 and meta.num_classes == 3
    assert json.loads((root / "synthetic_cub.json").read_text())["params"]["seed"] == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=1), "num_classes must be in"),
    (dict(images_per_class=1), "leaves a class without train or test images"),
    (dict(num_classes=9, num_prototypes=2), r"num_prototypes must be in \[3, 9\]"),
    (dict(prototype_prob=0.0), "prototype_prob must be in"),
    (dict(flip_prob=0.5), "flip_prob must be in"),
    (dict(train_fraction=1.0), "train_fraction must be in"),
    (dict(image_size=8), "image_size must be >= 16"),
    (dict(seed=-1), "seed must be a non-negative int"),
    (dict(cue_scale=0.2), r"cue_scale must be in \[0.5, 3.0\]"),
])
def test_invalid_parameters(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_synthetic_cub(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- registry


def test_registry_reads_an_existing_root_with_the_cub_reader(default_root, default_data):
    meta, _, _ = default_data
    dataset, info, num_classes = build_dataset("synthetic_cub", default_root, "train")
    assert num_classes == DEFAULTS.num_classes and len(dataset) == info.num_samples
    assert info.labels.tolist() == meta.labels[meta.is_train].tolist()
    image, label = dataset[0]
    assert image.size == (32, 32) and label == info.labels[0]


def test_registry_generates_only_the_default_root_or_when_asked(tmp_path, monkeypatch):
    small = functools.partial(synthetic_cub.generate_synthetic_cub, **SMALL)
    monkeypatch.setattr(synthetic_cub, "generate_synthetic_cub", small)
    # a misspelt path is an error, and nothing is created there
    with pytest.raises(FileNotFoundError, match="generated automatically only at the default"):
        build_dataset("synthetic_cub", tmp_path / "typo", "test")
    assert not (tmp_path / "typo").exists()
    # generate=True at any path
    dataset, info, num_classes = build_synthetic_cub(tmp_path / "new", "test", generate=True)
    assert num_classes == 4 and len(dataset) == info.num_samples == 12
    # the documented default path, relative to the working directory
    monkeypatch.chdir(tmp_path)
    dataset, info, num_classes = build_dataset("synthetic_cub", "./datasets/synthetic_cub", "test")
    assert (tmp_path / "datasets" / "synthetic_cub").is_dir() and len(dataset) == 12
