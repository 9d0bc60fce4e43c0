"""KNN multi-crop: the shared neighbour table, the dataset drawing small crops from
neighbours (also inside persistent dataloader workers), the feature bank, the crop split,
and ``KnnMultiCrop``'s lifecycle (warm-up switch, table of the bank, checkpointed state
reaching the workers' table). (The wcl method driving it: tests/methods/test_wcl_method.py,
which also spawns once for all WCL DDP checks, identical tables included.)"""
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from clinfonce_plugin.clusters.neighbours import knn_table
from clinfonce_plugin.data.knn_multicrop import (
    KnnMultiCrop,
    KnnMultiCropDataset,
    NeighbourTable,
    split_crop_pipelines,
    table_from_bank,
    write_bank,
)

# --------------------------------------------------------------- index-coded toy data


class CodedImages(Dataset):
    """Image i is the integer i; target i % 3."""

    def __init__(self, n):
        self.n = n
        self.targets = [i % 3 for i in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.array([i]), i % 3


def large_code(img):
    return torch.tensor([float(img[0])])


def small_code(img):
    return torch.tensor([float(img[0]) + 0.5])  # +0.5 marks a small crop


def _sources(batch, num_large):
    """Decoded source image of every small crop: (B, S)."""
    return torch.stack([c[:, 0] - 0.5 for c in batch[1][num_large:]], dim=1).round().long()


def _table(n, k):
    # neighbours of i: i+1 .. i+k (mod n), never i
    return (torch.arange(n)[:, None] + torch.arange(1, k + 1)[None, :]) % n


def test_inactive_table_gives_the_image_itself():
    table = NeighbourTable(10, 3)
    assert table.neighbours.is_shared() and table.state.is_shared()
    assert table.sources(4, 5) == [4] * 5
    table.update(_table(10, 3), active=False, epoch=3)
    assert table.sources(4, 5) == [4] * 5


def test_active_table_samples_neighbours_uniformly_and_reproducibly():
    n, k = 10, 3
    table = NeighbourTable(n, k)
    table.update(_table(n, k), active=True, epoch=0)
    counts = np.zeros(n, dtype=int)
    seen_per_epoch = []
    for epoch in range(40):
        table.set_state(True, epoch)
        src = table.sources(4, 6, seed=7)
        assert src == table.sources(4, 6, seed=7)  # same (seed, epoch, index): same choice
        assert set(src) <= {5, 6, 7}
        np.add.at(counts, src, 1)
        seen_per_epoch.append(tuple(src))
    assert len(set(seen_per_epoch)) > 30  # the epoch changes the draw
    # 240 draws over 3 neighbours: each one about 80 times
    assert all(50 < counts[j] < 110 for j in (5, 6, 7))
    table.set_state(True, 0)
    assert table.sources(4, 6, seed=7) != table.sources(4, 6, seed=8) or \
        table.sources(5, 6, seed=7) != table.sources(5, 6, seed=8)


def test_update_checks_the_shape():
    table = NeighbourTable(10, 3)
    with pytest.raises(ValueError, match=r"must be \(10, 3\), got \(10, 2\)"):
        table.update(torch.zeros(10, 2, dtype=torch.long), True, 0)


def test_dataset_small_crops_follow_the_table_in_persistent_workers():
    n, k, seed = 24, 3, 11
    table = NeighbourTable(n, k)  # shared memory, before the workers exist
    ds = KnnMultiCropDataset(CodedImages(n), [large_code, large_code],
                             [small_code] * 4, table, seed=seed)
    loader = DataLoader(ds, batch_size=6, shuffle=True, num_workers=2,
                        persistent_workers=True)

    def epoch_sources():
        out = {}
        for batch in loader:
            idx = batch[0]
            assert torch.equal(batch[1][0][:, 0].long(), idx)  # large crops: the image itself
            assert torch.equal(batch[2], idx % 3)
            for i, src in zip(idx.tolist(), _sources(batch, 2).tolist()):
                out[i] = src
        assert sorted(out) == list(range(n))
        return out

    # warm-up epoch: standard multi-crop
    for i, src in epoch_sources().items():
        assert src == [i] * 4
    # the table changes in place between epochs; the same worker processes see it
    nb = _table(n, k)
    table.update(nb, active=True, epoch=1)
    for i, src in epoch_sources().items():
        assert set(src) <= set(nb[i].tolist())
        assert src == table.sources(i, 4, seed)  # the seeded choice, made in the worker
    # switching back off is seen as well
    table.set_state(False, 2)
    for i, src in epoch_sources().items():
        assert src == [i] * 4


def test_dataset_rejects_a_table_of_another_size():
    with pytest.raises(ValueError, match="neighbour table has 5 rows but the dataset has 6"):
        KnnMultiCropDataset(CodedImages(6), [large_code], [small_code], NeighbourTable(5, 2))


# --------------------------------------------------------------------- feature bank


def test_write_bank_keeps_the_first_of_duplicate_indexes():
    bank = torch.zeros(6, 2)
    filled = torch.zeros(6, dtype=torch.bool)
    feats = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    write_bank(bank, filled, feats, torch.tensor([4, 1, 4, 0]))
    assert bank.tolist() == [[4, 4], [2, 2], [0, 0], [0, 0], [1, 1], [0, 0]]
    assert filled.tolist() == [True, True, False, False, True, False]
    with pytest.raises(ValueError, match=r"indexes must lie in \[0, 6\)"):
        write_bank(bank, filled, feats[:1], torch.tensor([6]))


def test_table_from_bank_searches_filled_rows_only():
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(10, 4, generator=g)
    filled = torch.tensor([True] * 7 + [False] * 3)
    table = table_from_bank(bank, filled, 2, backend="torch")
    expected = knn_table(bank[:7], 2, backend="torch")
    assert torch.equal(table[:7], expected)
    assert table[7:].tolist() == [[7, 7], [8, 8], [9, 9]]  # unseen: their own small crops
    with pytest.warns(UserWarning, match="only 2 images have features"):
        few = table_from_bank(bank, torch.tensor([True, True] + [False] * 8), 2, "torch")
    assert torch.equal(few, torch.arange(10)[:, None].repeat(1, 2))


# ------------------------------------------------------------------- the crop split


def test_split_crop_pipelines_puts_large_crops_first():
    augs = OmegaConf.create([{"crop_size": 32, "num_crops": 2}, {"crop_size": 16, "num_crops": 3}])
    large, small = split_crop_pipelines(augs, lambda aug: f"crop{aug.crop_size}")
    assert large == ["crop32"] * 2 and small == ["crop16"] * 3
    wrong = OmegaConf.create([{"crop_size": 32, "num_crops": 2}, {"crop_size": 16, "num_crops": 1},
                              {"crop_size": 32, "num_crops": 1}])
    with pytest.raises(ValueError, match=r"augmentations\[2\] is a large-crop pipeline listed "
                                         r"after a small-crop one"):
        split_crop_pipelines(wrong, lambda aug: aug)


# ------------------------------------------------------ KnnMultiCrop, the lifecycle


def _features(n, dim=5, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _run_epoch(knn, ds, epoch, feats):
    """What the method does around one epoch; returns the small crops' sources per image."""
    sources = {}
    knn.epoch_start(epoch)
    for batch in DataLoader(ds, batch_size=5, shuffle=False):
        for i, src in zip(batch[0].tolist(), _sources(batch, 2).tolist()):
            sources[i] = src
        knn.observe(feats[batch[0]], batch[0], epoch)
    return sources, knn.epoch_end(epoch)


def _knn(n, warmup, k=2):
    knn = KnnMultiCrop(n, k, warmup, backend="torch", seed=3)
    ds = knn.make_dataset(CodedImages(n), [large_code, large_code], [small_code] * 2)
    return knn, ds


def test_knn_multicrop_switches_to_neighbour_crops_after_the_warmup():
    n = 12
    feats = _features(n)
    knn, ds = _knn(n, warmup=2)
    assert isinstance(ds, KnnMultiCropDataset) and ds.table is knn.shared
    for epoch in (0, 1):  # warm-up: standard multi-crop; features stored during epoch 1 only
        sources, stats = _run_epoch(knn, ds, epoch, feats)
        assert all(src == [i, i] for i, src in sources.items())
        if epoch == 0:
            assert knn.bank is None and not bool(knn.valid) and stats == {}
    assert bool(knn.valid) and int(knn.epoch) == 2 and ds.table.active
    # the table is the K-NN of the stored features (loop reference)
    assert torch.equal(knn.bank, feats)
    unit = feats.double() / feats.double().norm(dim=1, keepdim=True)
    sim = unit @ unit.T
    for i in range(n):
        order = [j for j in sim[i].argsort(descending=True).tolist() if j != i]
        assert knn.neighbours[i].tolist() == order[:2]
    assert torch.equal(ds.table.neighbours, knn.neighbours)
    # the statistics of the new table: every row filled; neighbours of the same target
    same = [(j % 3 == i % 3) for i in range(n) for j in knn.neighbours[i].tolist()]
    assert float(stats["knn_filled_fraction"]) == 1.0
    assert float(stats["knn_neighbour_purity"]) == pytest.approx(sum(same) / len(same))
    # epoch 2: the small crops of i are cut from i's neighbours, never from i itself
    sources, _ = _run_epoch(knn, ds, 2, feats)
    for i, src in sources.items():
        assert set(src) <= set(knn.neighbours[i].tolist()) and i not in src


def test_knn_multicrop_state_is_checkpointed_and_reaches_the_workers_table():
    n = 12
    knn, ds = _knn(n, warmup=1)
    _run_epoch(knn, ds, 0, _features(n))
    state = knn.state_dict()
    assert set(state) == {"neighbours", "valid", "epoch"}  # the bank is not checkpointed
    # a fresh run: its own shared table is inactive until the state is loaded
    resumed, ds2 = _knn(n, warmup=1)
    assert not ds2.table.active
    resumed.load_state_dict(state)
    assert torch.equal(ds2.table.neighbours, state["neighbours"])
    assert ds2.table.active and ds2.table.epoch == 1
    sources, _ = _run_epoch(resumed, ds2, 1, _features(n))
    for i, src in sources.items():
        assert set(src) <= set(state["neighbours"][i].tolist())


def test_knn_multicrop_keeps_standard_crops_for_unseen_images():
    n = 12
    knn, ds = _knn(n, warmup=1)
    feats = _features(n)
    knn.epoch_start(0)
    knn.observe(feats[:8], torch.arange(8), 0)  # images 8..11 never seen
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 8 images with features are enough for k=2
        stats = knn.epoch_end(0)
    assert float(stats["knn_filled_fraction"]) == pytest.approx(8 / 12)
    assert knn.neighbours[8:].tolist() == [[i, i] for i in range(8, 12)]
    assert torch.equal(knn.neighbours[:8], knn_table(feats[:8], 2, backend="torch"))


def test_knn_multicrop_checks_its_arguments():
    with pytest.raises(ValueError, match="knn_k=12 must be smaller than the 12 training"):
        KnnMultiCrop(12, 12, 1)
    with pytest.raises(ValueError, match="knn_k=0"):
        KnnMultiCrop(12, 0, 1)
    with pytest.raises(ValueError, match="warmup_epochs must be >= 0, got -1"):
        KnnMultiCrop(12, 2, -1)
    with pytest.raises(ValueError, match="unknown backend 'annoy'"):
        KnnMultiCrop(12, 2, 1, backend="annoy")
    with pytest.raises(ValueError, match="training set has 6 images but the KNN table was "
                                         "built for 12"):
        KnnMultiCrop(12, 2, 1).make_dataset(CodedImages(6), [large_code], [small_code])
