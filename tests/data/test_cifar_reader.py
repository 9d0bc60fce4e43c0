"""CIFAR-10/100 readers on tiny trees written in the official python-pickle format (dicts
with bytes keys, protocol 2, rows of 3072 uint8 = R, G, B planes of 32x32)."""
import pickle

import numpy as np
import pytest
from PIL import Image

from clinfonce_plugin.data.cifar import read_cifar10, read_cifar100
from clinfonce_plugin.data.registry import build_dataset

C10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]


def _rows(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(parent, sizes=(2, 3, 1, 2, 2), test=3):
    root = parent / "cifar-10-batches-py"
    root.mkdir(parents=True)
    batches = {}
    for i, n in enumerate(sizes, 1):
        data, labels = _rows(n, i), [(i + k) % 10 for k in range(n)]
        _dump(root / f"data_batch_{i}", {b"batch_label": f"training batch {i} of 5".encode(),
                                         b"labels": labels, b"data": data,
                                         b"filenames": [b"x.png"] * n})
        batches[f"data_batch_{i}"] = (data, labels)
    data, labels = _rows(test, 99), [9, 0, 4][:test]
    _dump(root / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": labels,
                                b"data": data, b"filenames": [b"y.png"] * test})
    batches["test_batch"] = (data, labels)
    _dump(root / "batches.meta", {b"num_cases_per_batch": 10000, b"label_names": C10_NAMES,
                                  b"num_vis": 3072})
    return root, batches


def write_cifar100(parent):
    root = parent / "cifar-100-python"
    root.mkdir(parents=True)
    fine = [f"class{i}".encode() for i in range(100)]
    coarse = [f"super{i}".encode() for i in range(20)]
    splits = {}
    for name, n, seed in (("train", 4, 1), ("test", 2, 2)):
        data = _rows(n, seed)
        fine_labels = [(7 * k + seed) % 100 for k in range(n)]
        coarse_labels = [f // 5 for f in fine_labels]
        _dump(root / name, {b"filenames": [b"z.png"] * n, b"batch_label": b"x",
                            b"fine_labels": fine_labels, b"coarse_labels": coarse_labels,
                            b"data": data})
        splits[name] = (data, fine_labels, coarse_labels)
    _dump(root / "meta", {b"fine_label_names": fine, b"coarse_label_names": coarse})
    return root, splits


def _pixel(row, r, c, ch):
    return row[ch * 1024 + r * 32 + c]  # the official layout, spelled out


def test_cifar10_train_and_test(tmp_path):
    root, batches = write_cifar10(tmp_path)
    train = read_cifar10(root, "train")
    order = [f"data_batch_{i}" for i in range(1, 6)]
    data = np.concatenate([batches[b][0] for b in order])
    labels = sum((batches[b][1] for b in order), [])
    assert train.images.shape == (10, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.tolist() == labels
    assert train.class_names[0] == "airplane" and train.num_classes == 10
    for k, (r, c, ch) in enumerate([(0, 0, 0), (5, 7, 1), (31, 31, 2), (12, 30, 0)]):
        assert train.images[k, r, c, ch] == _pixel(data[k], r, c, ch)
    assert train.paths[:3] == ["data_batch_1/0", "data_batch_1/1", "data_batch_2/0"]
    test = read_cifar10(tmp_path, split=False)  # the parent directory works too
    assert test.labels.tolist() == [9, 0, 4] and test.root == root


def test_cifar10_registry_dataset_gives_rgb_images(tmp_path):
    root, batches = write_cifar10(tmp_path)
    ds, info, num_classes = build_dataset("cifar10", str(root), "train")
    assert num_classes == 10 and len(ds) == 10 and info.num_samples == 10
    image, target = ds[3]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (32, 32)
    row = batches["data_batch_2"][0][1]  # sample 3 = second row of data_batch_2
    assert image.getpixel((7, 5)) == tuple(int(_pixel(row, 5, 7, ch)) for ch in range(3))
    assert target == batches["data_batch_2"][1][1] == info.labels[3]


def test_cifar100_fine_and_coarse_labels(tmp_path):
    root, splits = write_cifar100(tmp_path)
    train = read_cifar100(tmp_path, "train")
    assert train.labels.tolist() == splits["train"][1]
    assert train.coarse_labels.tolist() == splits["train"][2]
    assert train.num_classes == 100 and train.class_names[7] == "class7"
    assert train.coarse_names[3] == "super3"
    assert train.images[2, 4, 9, 1] == _pixel(splits["train"][0][2], 4, 9, 1)
    ds, info, num_classes = build_dataset("cifar100", str(root), "test")
    assert num_classes == 100 and len(ds) == 2
    assert info.extra["coarse_labels"].tolist() == splits["test"][2]
    assert ds[1][1] == splits["test"][1][1]


def test_missing_files_are_named(tmp_path):
    root, _ = write_cifar10(tmp_path)
    (root / "data_batch_3").unlink()
    (root / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['data_batch_3', 'batches.meta'\]"):
        read_cifar10(root)
    with pytest.raises(FileNotFoundError, match=r"missing \['batches.meta'\]"):
        read_cifar10(root, "test")
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.*missing \['train', 'meta'\]"):
        read_cifar100(tmp_path / "nowhere")


def test_malformed_files_are_errors_naming_the_file(tmp_path):
    root, _ = write_cifar10(tmp_path)
    _dump(root / "data_batch_2", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match=r"data_batch_2: 'data' must be a \(n, 3072\) uint8"):
        read_cifar10(root)
    _dump(root / "data_batch_2", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    with pytest.raises(ValueError, match=r"data_batch_2: 'labels' has 1 entries for 2 images"):
        read_cifar10(root)
    _dump(root / "data_batch_2", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(ValueError, match=r"data_batch_2: missing key 'labels'"):
        read_cifar10(root)
    _dump(root / "data_batch_2", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        read_cifar10(root)
    (root / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"data_batch_2: not a CIFAR python pickle"):
        read_cifar10(root)
    with pytest.raises(ValueError, match=r"unknown CIFAR split 'all'"):
        read_cifar10(root, "all")


def test_a_crafted_cifar_pickle_runs_nothing(tmp_path):
    import pickle

    from clinfonce_plugin.data.cifar import _load

    marker = tmp_path / "written_by_the_pickle"

    class WritesAFile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": WritesAFile()}, protocol=2))
    with pytest.raises(ValueError, match=r"refused to load (io|builtins)\.open"):
        _load(path)
    assert not marker.exists()


def test_cifar100_superclasses_are_a_two_level_hierarchy(tmp_path):
    from clinfonce_plugin.clusters.hierarchy import HierarchyProvider

    root, splits = write_cifar100(tmp_path)
    _, info, _ = build_dataset("cifar100", str(root), "train")
    fine, coarse = splits["train"][1], splits["train"][2]  # as written by the fixture
    assert info.hierarchy == sorted({(f"super{c}", f"class{f}") for f, c in zip(fine, coarse)})
    # level 1 = the virtual root above the 20 superclasses, 2 = superclasses, 3 = classes
    assert HierarchyProvider(info, level=1).ids.tolist() == [0] * len(fine)
    level2 = HierarchyProvider(info, level=2)
    assert [level2.cluster_names[i] for i in level2.ids.tolist()] == [f"super{c}" for c in coarse]
    level3 = HierarchyProvider(info, level=3)
    assert [level3.cluster_names[i] for i in level3.ids.tolist()] == [f"class{f}" for f in fine]


def test_cifar100_class_in_two_superclasses_is_an_error(tmp_path):
    root, _ = write_cifar100(tmp_path)
    _dump(root / "train", {b"data": _rows(2, 0), b"fine_labels": [5, 5],
                           b"coarse_labels": [1, 2]})
    with pytest.raises(ValueError, match=r"class 'class5' has images in several superclasses "
                                         r"\['super1', 'super2'\]"):
        build_dataset("cifar100", str(root), "train")


def test_cifar10_has_no_hierarchy_for_the_provider(tmp_path):
    from clinfonce_plugin.clusters.hierarchy import HierarchyProvider

    root, _ = write_cifar10(tmp_path)
    _, info, _ = build_dataset("cifar10", str(root), "test")
    assert info.hierarchy is None
    with pytest.raises(ValueError, match=r"provides no class hierarchy of its own"):
        HierarchyProvider(info, level=2)
