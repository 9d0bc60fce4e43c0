"""KNN multi-crop: the shared neighbour table, the dataset drawing small crops from
neighbours (also inside persistent dataloader workers), the feature bank, and the wcl
method's warm-up switch and checkpointed table. (Identical tables on 2 DDP processes:
tests/methods/test_wcl_method.py, which spawns once for all WCL DDP checks.)"""
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from clinfonce_plugin import host
from clinfonce_plugin.clusters.neighbours import knn_table
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.knn_multicrop import (
    KnnMultiCropDataset,
    NeighbourTable,
    table_from_bank,
    write_bank,
)

# --------------------------------------------------------------- index-coded toy data


class CodedImages(Dataset):
    """Image i is the integer i; target i % 3."""

    def __init__(self, n):
        self.n = n

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


# ------------------------------------------------------ the wcl method's KNN state


def _aug(crop_size, num_crops):
    # no colour or geometric randomness: a solid image stays solid, its value decodable
    return {"rrc": {"enabled": False, "crop_min_scale": 0.08, "crop_max_scale": 1.0},
            "color_jitter": {"prob": 0.0, "brightness": 0.0, "contrast": 0.0,
                             "saturation": 0.0, "hue": 0.0},
            "grayscale": {"prob": 0.0}, "gaussian_blur": {"prob": 0.0},
            "solarization": {"prob": 0.0}, "equalization": {"prob": 0.0},
            "horizontal_flip": {"prob": 0.0}, "crop_size": crop_size, "num_crops": num_crops}


class SolidImages(Dataset):
    """Image i is a solid 40x40 RGB image of red value 10 * i; target i % 3."""

    def __init__(self, n):
        self.n = n
        self.targets = [i % 3 for i in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return Image.new("RGB", (40, 40), (10 * i, 128, 255 - 10 * i)), i % 3


def _decode(crop):
    """Red value / 10 of a normalised solid crop (ImageNet mean/std of the host)."""
    red = crop[:, 0].mean(dim=(1, 2)) * 0.229 + 0.485
    return (red * 255 / 10).round().long()


def _wcl(cfg_factory, n, **kw):
    kw.setdefault("knn_k", 2)
    kw.setdefault("knn_backend", "torch")
    cfg = cfg_factory("wcl", **kw)
    cfg.augmentations = [_aug(32, 2), _aug(16, 2)]
    cfg.data.num_small_crops = 2
    model = host.METHODS["wcl"](cfg, sample_info=SampleInfo(num_samples=n))
    model.log_dict = lambda *a, **k: None
    model.log = lambda *a, **k: None
    return model


def _run_epoch(model, ds, epoch):
    """What Lightning does around one epoch, without a Trainer; returns decoded sources."""
    sources = {}
    with mock.patch.object(type(model), "current_epoch", new_callable=mock.PropertyMock,
                           return_value=epoch):
        model.on_train_epoch_start()
        for batch in DataLoader(ds, batch_size=6, shuffle=False):
            for i, s1, s2 in zip(batch[0].tolist(), _decode(batch[1][2]).tolist(),
                                 _decode(batch[1][3]).tolist()):
                sources[i] = [s1, s2]
            with torch.no_grad():
                model.training_step(batch, 0)
        model.on_train_epoch_end()
    return sources


def test_wcl_switches_to_neighbour_crops_after_the_warmup(cfg_factory):
    n = 12
    model = _wcl(cfg_factory, n, knn_warmup_epochs=2).train()
    ds = model.make_train_dataset(SolidImages(n), transform=None)
    assert isinstance(ds, KnnMultiCropDataset)
    for epoch in (0, 1):  # warm-up: standard multi-crop; features stored during epoch 1 only
        for i, src in _run_epoch(model, ds, epoch).items():
            assert src == [i, i]
        if epoch == 0:
            assert model._bank is None and not bool(model.knn_valid)
    assert bool(model.knn_valid) and int(model.knn_epoch) == 2 and ds.table.active
    # the table is the K-NN of the stored first-large-crop features (loop reference)
    bank = model._bank.double()
    bank = bank / bank.norm(dim=1, keepdim=True)
    sim = bank @ bank.T
    sim.fill_diagonal_(-2)
    table = model.knn_neighbours
    assert torch.equal(ds.table.neighbours, table)
    best = sim.max(dim=1).values
    assert torch.allclose(sim.gather(1, table[:, :1]).squeeze(1), best, atol=1e-6)
    # epoch 2: the small crops of i are cut from i's neighbours
    moved = 0
    for i, src in _run_epoch(model, ds, 2).items():
        assert set(src) <= set(table[i].tolist())
        moved += sum(s != i for s in src)
    assert moved == 2 * n  # never the image itself


def test_wcl_table_is_checkpointed_and_restored_into_the_workers_table(cfg_factory):
    n = 12
    model = _wcl(cfg_factory, n, knn_warmup_epochs=1).train()
    ds = model.make_train_dataset(SolidImages(n), transform=None)
    _run_epoch(model, ds, 0)
    state = model.state_dict()
    assert {"knn_neighbours", "knn_valid", "knn_epoch"} <= set(state)
    assert not any("bank" in key for key in state)  # the bank is not checkpointed
    # a fresh run: its own shared table is inactive until the state is loaded
    resumed = _wcl(cfg_factory, n, knn_warmup_epochs=1)
    ds2 = resumed.make_train_dataset(SolidImages(n), transform=None)
    assert not ds2.table.active
    resumed.load_state_dict(state)
    assert torch.equal(ds2.table.neighbours, state["knn_neighbours"])
    assert ds2.table.active and ds2.table.epoch == 1
    # and the next epoch's crops come from that table
    for i, src in _run_epoch(resumed, ds2, 1).items():
        assert set(src) <= set(state["knn_neighbours"][i].tolist())


def test_wcl_without_small_crops_uses_plain_index_wrapping(cfg_factory):
    model = host.METHODS["wcl"](cfg_factory("wcl"), sample_info=SampleInfo(num_samples=4))
    assert not model.knn_enabled and not hasattr(model, "knn_neighbours")
    ds = model.make_train_dataset(SolidImages(4), transform=lambda img: [torch.zeros(1)])
    assert not isinstance(ds, KnnMultiCropDataset)
    assert ds[3][0] == 3
