"""IndexedDataset (host batch format) and the dataset registry."""
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from clinfonce_plugin.data import DATASETS, IndexedDataset, build_dataset, read_cub
from tests.data.conftest import IMAGES


class Toy(Dataset):
    """image i is a (3, 4, 4) tensor filled with i; targets with unknowns (None, -1)."""

    targets = [3, None, 0, -1, 7]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.full((3, 4, 4), float(i)), self.targets[i]


def two_crops(image):
    return [image + 0.5, image * 2]


def test_item_is_index_crops_target_with_unknown_as_minus_one():
    ds = IndexedDataset(Toy(), two_crops)
    assert len(ds) == 5
    expected_targets = [3, -1, 0, -1, 7]
    for i in range(5):
        index, crops, target = ds[i]
        assert index == i and target == expected_targets[i]
        assert len(crops) == 2
        assert torch.equal(crops[0], torch.full((3, 4, 4), i + 0.5))
        assert torch.equal(crops[1], torch.full((3, 4, 4), 2.0 * i))


def test_default_collate_gives_host_batch_format():
    loader = DataLoader(IndexedDataset(Toy(), two_crops), batch_size=4, shuffle=False)
    indexes, crops, targets = next(iter(loader))
    assert indexes.dtype == torch.int64 and indexes.tolist() == [0, 1, 2, 3]
    assert isinstance(crops, list) and len(crops) == 2
    assert crops[0].shape == crops[1].shape == (4, 3, 4, 4)
    # crop 0 of sample b was built from image b
    assert crops[0][:, 0, 0, 0].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert targets.dtype == torch.int64 and targets.tolist() == [3, -1, 0, -1]


def test_shuffled_loader_keeps_index_with_its_sample():
    loader = DataLoader(IndexedDataset(Toy(), two_crops), batch_size=5, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    indexes, crops, _ = next(iter(loader))
    assert sorted(indexes.tolist()) == [0, 1, 2, 3, 4]
    assert crops[1][:, 0, 0, 0].tolist() == (2.0 * indexes.float()).tolist()


def test_single_tensor_transform_is_one_crop():
    index, crops, _ = IndexedDataset(Toy(), lambda x: x)[2]
    assert index == 2 and len(crops) == 1 and torch.equal(crops[0], torch.full((3, 4, 4), 2.0))


def test_negative_index_is_reported_non_negative():
    index, crops, target = IndexedDataset(Toy(), two_crops)[-1]
    assert index == 4 and target == 7 and crops[1][0, 0, 0] == 8.0


def test_out_of_range_index():
    with pytest.raises(IndexError, match="index 5 out of range for dataset of size 5"):
        IndexedDataset(Toy(), two_crops)[5]


def test_bad_transform():
    with pytest.raises(ValueError, match="callable transform"):
        IndexedDataset(Toy(), None)
    with pytest.raises(ValueError, match="list of tensors, got str"):
        IndexedDataset(Toy(), lambda x: "crop")[0]


# ----------------------------------------------------------------------------- registry


NAMES = ["cifar10", "cifar100", "cub", "custom", "imagenet", "imagenet100", "synthetic_cub",
         "synthetic_cub_bench", "utzappos", "wider_attribute"]


def test_registry_names():
    assert sorted(DATASETS) == NAMES


def test_unknown_dataset_lists_valid_names(cub_tree):
    message = f"unknown dataset 'cub200'. Choose from {NAMES}"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_dataset("cub200", cub_tree.root, "train")


def test_build_cub_dataset_info_and_classes_agree(cub_tree):
    dataset, info, num_classes = build_dataset("cub", cub_tree.root, "train")
    assert num_classes == 3
    assert len(dataset) == info.num_samples == 3
    assert [dataset[i][1] for i in range(3)] == info.labels.tolist() == [0, 1, 1]
    meta = read_cub(cub_tree.root)
    np.testing.assert_array_equal(info.attributes, meta.attributes[meta.split(True)])
    assert info.paths == [cub_tree.paths[i] for i in (0, 2, 3)]


def test_cub_through_indexed_dataset_and_loader(cub_tree):
    def to_crops(image):
        t = torch.zeros(3, 5, 5)
        t[0, 0, 0] = image.size[0]  # remember which image it was
        return [t, t + 1]

    dataset, info, _ = build_dataset("cub", cub_tree.root, "all")
    loader = DataLoader(IndexedDataset(dataset, to_crops), batch_size=5)
    indexes, crops, targets = next(iter(loader))
    assert indexes.tolist() == [0, 1, 2, 3, 4]
    assert targets.tolist() == info.labels.tolist() == [0, 0, 1, 1, 2]
    assert crops[0][:, 0, 0, 0].tolist() == [7, 8, 9, 10, 11]  # image widths, in index order



def test_open_split_reports_the_counts(cub_tree, capsys):
    from omegaconf import OmegaConf

    from clinfonce_plugin.data.registry import open_split

    cfg = OmegaConf.create({"dataset": "cub", "train_path": str(cub_tree.root)})
    open_split(cfg, "train")
    n_train = sum(1 for _, _, t in IMAGES.values() if t == 1)
    expected = (f"cub train: {n_train} images, {len(cub_tree.class_names)} classes, "
                f"{len(cub_tree.attribute_names)} attributes (from {cub_tree.root})")
    assert expected in capsys.readouterr().out
