"""The wcl method: every loss term against loop references written here (NT-Xent, SupCon
L_out on weak labels from a union-find 1-NN graph, the two multi-crop terms), the Table 2
ablations (instance-only = the host's SimCLR), logs, gradients, config checks, KNN
multi-crop driven by the method (warm-up switch on real crops, checkpointed table), and 2
DDP processes against one process (loss, gradients, the KNN table and the feature bank, the
collectives of a step)."""
import collections
from unittest import mock

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from clinfonce_plugin import host
from clinfonce_plugin.config import ConfigError
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.knn_multicrop import (
    KnnMultiCropDataset,
    ensure_identical_across_ranks,
    gather_indexed,
    table_from_bank,
    write_bank,
)
from clinfonce_plugin.losses import multicrop_nce, multicrop_swap
from tests.ddp import run_ranks

TAU = 0.2  # the conftest configs' temperature

# ------------------------------------------------------------------ loop references


def ref_nt_xent(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n, b = z.shape[0], z1.shape[0]
    total = 0.0
    for a in range(n):
        s = [float(z[a] @ z[j]) / tau for j in range(n)]
        denom = sum(torch.tensor(s[j]).exp() for j in range(n) if j != a)
        total += -s[(a + b) % n] + float(torch.log(denom))
    return total / n


def ref_supcon_out(v, y, tau):
    v = F.normalize(v.double(), dim=1)
    n = v.shape[0]
    terms = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and y[p] == y[a]]
        if not pos:
            continue
        s = [float(v[a] @ v[j]) / tau for j in range(n)]
        log_z = float(torch.logsumexp(torch.tensor([s[j] for j in range(n) if j != a]), 0))
        terms.append(sum(log_z - s[p] for p in pos) / len(pos))
    return sum(terms) / len(terms)


def ref_weak_labels(v):
    """1-NN (cosine, self excluded, ties to the smallest index) + union-find, labels
    numbered by first occurrence."""
    v = F.normalize(v.double(), dim=1)
    n = v.shape[0]
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        best, arg = -2.0, -1
        for j in range(n):
            if j != i and float(v[i] @ v[j]) > best:
                best, arg = float(v[i] @ v[j]), j
        parent[find(i)] = find(arg)
    roots, labels = {}, []
    for i in range(n):
        labels.append(roots.setdefault(find(i), len(roots)))
    return labels


def ref_cnce(small, k1, k2, tau):
    """small: list over crops of (B, D); mean over crops, images and the two views."""
    terms = []
    for keys in (k1, k2):
        keys = F.normalize(keys.double(), dim=1)
        for q_crop in small:
            q_crop = F.normalize(q_crop.double(), dim=1)
            for b in range(q_crop.shape[0]):
                logits = keys @ q_crop[b] / tau
                terms.append(float(torch.logsumexp(logits, 0) - logits[b]))
    return sum(terms) / len(terms)


def ref_cswap(small, k1, k2, y1, y2, tau):
    total = 0.0
    for keys, y_other in ((k1, y2), (k2, y1)):
        keys = F.normalize(keys.double(), dim=1)
        terms = []
        for q_crop in small:
            q_crop = F.normalize(q_crop.double(), dim=1)
            for b in range(q_crop.shape[0]):
                logits = keys @ q_crop[b] / tau
                lse = float(torch.logsumexp(logits, 0))
                pos = [p for p in range(keys.shape[0]) if y_other[p] == y_other[b]]
                terms.append(sum(lse - float(logits[p]) for p in pos) / len(pos))
        total += sum(terms) / len(terms)
    return total


def ref_purity(labels, targets):
    known = [(l, t) for l, t in zip(labels, targets) if t != -1]
    good = 0
    for comp in set(l for l, _ in known):
        ts = [t for l, t in known if l == comp]
        good += max(ts.count(t) for t in set(ts))
    return good / len(known)


# ---------------------------------------------------------------------------- setup


def _aug(crop_size, num_crops):
    return {"rrc": {"enabled": True, "crop_min_scale": 0.3, "crop_max_scale": 1.0},
            "color_jitter": {"prob": 0.0}, "grayscale": {"prob": 0.0},
            "gaussian_blur": {"prob": 0.0}, "solarization": {"prob": 0.0},
            "horizontal_flip": {"prob": 0.0}, "crop_size": crop_size, "num_crops": num_crops}


def _model(cfg_factory, small=0, n=16, **kw):
    cfg = cfg_factory("wcl", **kw)
    if small:
        cfg.augmentations = [_aug(32, 2), _aug(16, small)]
        cfg.data.num_small_crops = small
    model = host.METHODS["wcl"](cfg, sample_info=SampleInfo(num_samples=n))
    model.logged = {}
    model.log_dict = lambda d, **k: model.logged.update(
        {key: float(torch.as_tensor(v).detach()) for key, v in d.items()})
    model.log = lambda *a, **k: None
    return model


def _batch(b=8, small=0, seed=1, targets=None):
    g = torch.Generator().manual_seed(seed)
    crops = [torch.randn(b, 3, 32, 32, generator=g) for _ in range(2)]
    crops += [torch.randn(b, 3, 16, 16, generator=g) for _ in range(small)]
    t = torch.arange(b) % 3 if targets is None else targets
    return torch.arange(b) + 3, crops, t


def _outputs(model, batch):
    """Per-crop outputs exactly as training_step computes them (eval mode, no grad)."""
    with torch.no_grad():
        large = [model(x) for x in batch[1][:2]]
        small = [model.multicrop_forward(x) for x in batch[1][2:]]
    known = batch[2] != -1
    probe = sum(F.cross_entropy(o["logits"][known], batch[2][known]) for o in large) / 2 \
        if bool(known.any()) else 0.0
    return large, small, float(probe)


def _reference(model, batch, swap_weight=0.5, cnce_weight=1.0, cswap_weight=0.5):
    large, small, probe = _outputs(model, batch)
    terms = {}
    if model.has_instance:
        terms["nce"] = ref_nt_xent(large[0]["z"], large[1]["z"], TAU)
        if small:
            terms["cnce"] = ref_cnce([o["z"] for o in small], large[0]["z"], large[1]["z"], TAU)
    if model.has_weak:
        key = model.weak_key
        v1, v2 = large[0][key], large[1][key]
        y1, y2 = ref_weak_labels(v1), ref_weak_labels(v2)
        if model.swap:
            terms["swap"] = ref_supcon_out(v1, y2, TAU) + ref_supcon_out(v2, y1, TAU)
        else:
            terms["swap"] = ref_supcon_out(v1, y1, TAU) + ref_supcon_out(v2, y2, TAU)
        if small:
            terms["cswap"] = ref_cswap([o[key] for o in small], v1, v2, y1, y2, TAU)
        terms["labels"] = (y1, y2)
    total = probe + terms.get("nce", 0.0) + cnce_weight * terms.get("cnce", 0.0) \
        + swap_weight * terms.get("swap", 0.0) + cswap_weight * terms.get("cswap", 0.0)
    return total, terms


# ---------------------------------------------------------------------------- tests


def test_instance_ablation_is_the_host_simclr(cfg_factory):
    wcl = _model(cfg_factory, ablation="instance", proj_batch_norm=False).eval()
    simclr = host.METHODS["simclr"](cfg_factory("simclr")).eval()
    simclr.log = simclr.log_dict = lambda *a, **k: None
    # same backbone, probe and projector weights (Linear-ReLU-Linear in both)
    simclr.load_state_dict(wcl.state_dict(), strict=True)
    assert not hasattr(wcl, "weak_projector")
    batch = _batch()
    with torch.no_grad():
        a, b = wcl.training_step(batch, 0), simclr.training_step(batch, 0)
    assert float(a) == pytest.approx(float(b), abs=1e-5)
    # base logs (probe) aside, only the instance term is logged: no weak labels are built
    assert set(wcl.logged) - {"train_class_loss", "train_acc1", "train_acc5"} \
        == {"train_nce_loss"}


@pytest.mark.parametrize("ablation,swap", [("two_heads", True), ("two_heads", False),
                                           ("one_head", True), ("weak_only", True)])
def test_two_view_loss_matches_the_loop_reference(cfg_factory, ablation, swap):
    model = _model(cfg_factory, ablation=ablation, swap=swap).eval()
    batch = _batch()
    with torch.no_grad():
        loss = float(model.training_step(batch, 0))
    expected, terms = _reference(model, batch)
    assert loss == pytest.approx(expected, abs=1e-4)
    assert model.logged["train_swap_loss"] == pytest.approx(terms["swap"], abs=1e-4)
    if ablation == "weak_only":
        assert "train_nce_loss" not in model.logged
        names = {g["name"] for g in model.learnable_params}
        assert "projector" not in names and "weak_projector" in names
    else:
        assert model.logged["train_nce_loss"] == pytest.approx(terms["nce"], abs=1e-4)
    if ablation == "one_head":
        assert not hasattr(model, "weak_projector")


def test_scipy_weak_label_backend_gives_the_same_loss(cfg_factory):
    batch = _batch(small=1)
    losses = []
    for backend in ("torch", "scipy"):
        torch.manual_seed(0)
        model = _model(cfg_factory, small=1, knn_multicrop=False,
                       weak_label_backend=backend).eval()
        with torch.no_grad():
            losses.append(float(model.training_step(batch, 0)))
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_full_wcl_with_small_crops_matches_the_loop_reference(cfg_factory):
    model = _model(cfg_factory, small=2, cnce_weight=0.7, swap_weight=0.4,
                   cswap_weight=0.3, knn_multicrop=False).eval()
    batch = _batch(small=2)
    with torch.no_grad():
        loss = float(model.training_step(batch, 0))
    expected, terms = _reference(model, batch, swap_weight=0.4, cnce_weight=0.7,
                                 cswap_weight=0.3)
    assert loss == pytest.approx(expected, abs=1e-4)
    for name in ("nce", "cnce", "swap", "cswap"):
        assert model.logged[f"train_{name}_loss"] == pytest.approx(terms[name], abs=1e-4), name


def test_logs_component_statistics_and_purity(cfg_factory):
    model = _model(cfg_factory).eval()
    targets = torch.tensor([0, 1, 2, 0, -1, 1, 2, -1])
    batch = _batch(targets=targets)
    with torch.no_grad():
        model.training_step(batch, 0)
    _, terms = _reference(model, batch)
    y1, y2 = terms["labels"]
    n_comp = [len(set(y)) for y in (y1, y2)]
    assert model.logged["weak_num_components"] == pytest.approx(sum(n_comp) / 2)
    assert model.logged["weak_mean_component_size"] == pytest.approx(
        (8 / n_comp[0] + 8 / n_comp[1]) / 2)
    t = targets.tolist()
    assert model.logged["weak_purity"] == pytest.approx(
        (ref_purity(y1, t) + ref_purity(y2, t)) / 2)
    # no known target: no purity
    model.logged.clear()
    with torch.no_grad():
        model.training_step(_batch(targets=torch.full((8,), -1)), 0)
    assert "weak_purity" not in model.logged and "weak_num_components" in model.logged


def test_hand_computed_multicrop_terms():
    # two images, orthogonal keys in both views; small crop of image 0 along key 0, of
    # image 1 along key 1; tau = 1: logits (1, 0) -> -log(e / (e + 1)) = log(1 + 1/e)
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    small = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # norms do not matter
    e = torch.e
    assert float(multicrop_nce(small, (keys, keys), 1.0)) == pytest.approx(
        float(torch.log(torch.tensor(1 + 1 / e))), abs=1e-6)
    # both images in one weak class: both keys are positives of every small crop,
    # l = -(log(e/(e+1)) + log(1/(e+1))) / 2 = log(e + 1) - 1/2, summed over the 2 views
    same = torch.tensor([0, 0])
    assert float(multicrop_swap(small, (keys, keys), (same, same), 1.0)) == pytest.approx(
        2 * (float(torch.log(torch.tensor(e + 1))) - 0.5), abs=1e-6)
    # separate classes: back to the instance term, per view, summed
    sep = torch.tensor([0, 1])
    assert float(multicrop_swap(small, (keys, keys), (sep, sep), 1.0)) == pytest.approx(
        2 * float(torch.log(torch.tensor(1 + 1 / e))), abs=1e-6)


@pytest.mark.parametrize("s,b,d,tau", [(1, 3, 4, 0.1), (3, 5, 6, 0.5), (2, 8, 3, 1.0)])
def test_multicrop_terms_match_loop_references(s, b, d, tau):
    g = torch.Generator().manual_seed(s * 10 + b)
    small = [torch.randn(b, d, generator=g) for _ in range(s)]
    k1, k2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    y1 = torch.randint(0, 3, (b,), generator=g)
    y2 = torch.randint(0, 3, (b,), generator=g)
    assert float(multicrop_nce(torch.cat(small), (k1, k2), tau)) == pytest.approx(
        ref_cnce(small, k1, k2, tau), abs=1e-5)
    assert float(multicrop_swap(torch.cat(small), (k1, k2), (y1, y2), tau)) == pytest.approx(
        ref_cswap(small, k1, k2, y1.tolist(), y2.tolist(), tau), abs=1e-5)


def test_gradients_reach_backbone_and_both_heads(cfg_factory):
    model = _model(cfg_factory, small=2, knn_multicrop=False).train()
    loss = model.training_step(_batch(small=2), 0)
    loss.backward()
    for name in ("backbone", "projector", "weak_projector"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    # the heads have BN after the hidden layer (official code) unless switched off
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.weak_projector.modules())


def test_config_errors(cfg_factory):
    with pytest.raises(ConfigError, match=r"method_kwargs.lambda: unknown key. Valid keys here: \['ablation'"):
        _model(cfg_factory, **{"lambda": 1.0})
    with pytest.raises(ConfigError, match="unknown method_kwargs.ablation 'g_only'. Choose"):
        _model(cfg_factory, ablation="g_only")
    with pytest.raises(ConfigError, match="weak_label_backend 'networkx'"):
        _model(cfg_factory, weak_label_backend="networkx")
    with pytest.raises(ConfigError, match="swap_weight must be >= 0"):
        _model(cfg_factory, swap_weight=-1)
    cfg = cfg_factory("wcl")
    cfg.data.num_large_crops = 3
    with pytest.raises(ConfigError, match="exactly 2 large crops"):
        host.METHODS["wcl"](cfg, sample_info=SampleInfo(num_samples=8))
    with pytest.raises(ValueError, match="knn_k=8 must be smaller than the 8 training"):
        _model(cfg_factory, small=2, n=8, knn_k=8)


# ------------------------------------------ KNN multi-crop driven by the method


def _solid_aug(crop_size, num_crops):
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
    cfg.augmentations = [_solid_aug(32, 2), _solid_aug(16, 2)]
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
            assert model.knn.bank is None and not bool(model.knn.valid)
    assert bool(model.knn.valid) and int(model.knn.epoch) == 2 and ds.table.active
    # the table is the K-NN of the stored first-large-crop features (loop reference)
    bank = model.knn.bank.double()
    bank = bank / bank.norm(dim=1, keepdim=True)
    sim = bank @ bank.T
    sim.fill_diagonal_(-2)
    table = model.knn.neighbours
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
    assert {"knn.neighbours", "knn.valid", "knn.epoch"} <= set(state)
    # DDP leaves them alone: every rank computes the same table
    assert model._ddp_params_and_buffers_to_ignore == ["knn.neighbours", "knn.valid",
                                                       "knn.epoch"]
    assert not any("bank" in key for key in state)  # the bank is not checkpointed
    # a fresh run: its own shared table is inactive until the state is loaded
    resumed = _wcl(cfg_factory, n, knn_warmup_epochs=1)
    ds2 = resumed.make_train_dataset(SolidImages(n), transform=None)
    assert not ds2.table.active
    resumed.load_state_dict(state)
    assert torch.equal(ds2.table.neighbours, state["knn.neighbours"])
    assert ds2.table.active and ds2.table.epoch == 1
    # and the next epoch's crops come from that table
    for i, src in _run_epoch(resumed, ds2, 1).items():
        assert set(src) <= set(state["knn.neighbours"][i].tolist())


def test_wcl_without_small_crops_uses_plain_index_wrapping(cfg_factory):
    model = host.METHODS["wcl"](cfg_factory("wcl"), sample_info=SampleInfo(num_samples=4))
    assert model.knn is None and not any("knn" in key for key in model.state_dict())
    ds = model.make_train_dataset(SolidImages(4), transform=lambda img: [torch.zeros(1)])
    assert not isinstance(ds, KnnMultiCropDataset)
    assert ds[3][0] == 3


def test_wcl_loads_checkpoints_with_the_former_flat_table_keys(cfg_factory):
    n = 12
    model = _wcl(cfg_factory, n, knn_warmup_epochs=1).train()
    ds = model.make_train_dataset(SolidImages(n), transform=None)
    _run_epoch(model, ds, 0)
    # the names the table's buffers had when the method held them itself
    old = {key.replace("knn.", "knn_"): v for key, v in model.state_dict().items()}
    resumed = _wcl(cfg_factory, n, knn_warmup_epochs=1)
    ds2 = resumed.make_train_dataset(SolidImages(n), transform=None)
    resumed.load_state_dict(old)  # strict
    assert torch.equal(resumed.knn.neighbours, model.knn.neighbours)
    assert ds2.table.active and ds2.table.epoch == 1


# ------------------------------------------------------------------ 2 DDP processes
# One spawn of 2 gloo processes serves every DDP check of WCL (module-scoped fixture):
# the method's step against one process, and the KNN table (method level, and the bank
# helpers with padding, duplicates and a disagreeing rank).

WORLD = 2
N_BANK, F_BANK, K_BANK = 40, 8, 4


def _ddp_model():
    from tests.conftest import make_cfg  # the spawned process has no pytest fixtures

    torch.manual_seed(0)
    cfg = make_cfg("wcl", knn_k=2, knn_warmup_epochs=1, knn_backend="faiss")
    cfg.augmentations = [_aug(32, 2), _aug(16, 2)]
    cfg.data.num_small_crops = 2
    model = host.METHODS["wcl"](cfg, sample_info=SampleInfo(num_samples=16)).eval()
    model.log_dict = model.log = lambda *a, **k: None
    return model


def _step(model, batch):
    """One step + the epoch end (which computes the KNN table from the stored features)."""
    model.zero_grad()
    loss = model.training_step(batch, 0)  # eval mode: BN does not depend on the batch split
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.on_train_epoch_end()
    return float(loss.detach()), grads, model.knn.neighbours.clone()


def _bank_data():
    g = torch.Generator().manual_seed(5)
    return torch.randn(N_BANK, F_BANK, generator=g), torch.randperm(N_BANK, generator=g)


def _bank_steps(order):
    """Per step, per rank: indexes. Rank 1 has fewer rows in the last step (padding path);
    both ranks see order[0] in the first step (DistributedSampler pads with repeats)."""
    steps = [[order[0:8], torch.cat([order[:1], order[9:16]])],
             [order[16:24], order[24:32]],
             [order[32:40], order[36:38]]]
    return steps


def _bank_rows(feats, idx, rank):
    return feats[idx] + 0.01 * (rank + 1)  # each rank's own augmentation of an image


class _Collectives:
    """Records (collective, payload shape, dtype) of every all_gather / all_reduce /
    broadcast run inside the block."""

    def __enter__(self):
        self.calls, self._saved = [], {}
        for name in ("all_gather", "all_reduce", "broadcast"):
            self._saved[name] = original = getattr(dist, name)

            def spy(tensor, *args, _name=name, _original=original, **kwargs):
                payload = args[0] if _name == "all_gather" else tensor
                self.calls.append((_name, tuple(payload.shape), payload.dtype))
                return _original(tensor, *args, **kwargs)

            setattr(dist, name, spy)
        return self

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(dist, name, original)


def _ddp_worker(rank):
    out = {}
    # the method: this rank's half of the batch
    idx, crops, targets = _batch(b=8, small=2, seed=3)
    rows = slice(rank * 4, rank * 4 + 4)
    model = _ddp_model()
    with _Collectives() as collectives:
        loss, grads, table = _step(model, (idx[rows], [c[rows] for c in crops], targets[rows]))
    out["collectives"] = collectives.calls
    for g in grads.values():  # what DDP does with the gradients
        dist.all_reduce(g)
        g /= WORLD
    out.update(loss=loss, grads=grads, method_table=table)
    # the bank helpers
    feats, order = _bank_data()
    bank = torch.zeros(N_BANK, F_BANK)
    filled = torch.zeros(N_BANK, dtype=torch.bool)
    for per_rank in _bank_steps(order):
        all_feats, all_idx = gather_indexed(_bank_rows(feats, per_rank[rank], rank),
                                            per_rank[rank])
        write_bank(bank, filled, all_feats, all_idx)
    table = table_from_bank(bank, filled, K_BANK, backend="faiss")
    table, agreed = ensure_identical_across_ranks(table)
    other = table.clone()
    if rank == 1:  # a rank that computed something else gets rank 0's table
        other[0, 0] = (other[0, 0] + 1) % N_BANK
    fixed, agreed_other = ensure_identical_across_ranks(other)
    out.update(bank=bank, filled=filled, table=table, agreed=agreed, fixed=fixed,
               agreed_other=agreed_other)
    return out


@pytest.fixture(scope="module")
def ddp_results():
    return run_ranks(_ddp_worker, world_size=WORLD)


def test_two_ddp_processes_match_one_process(ddp_results):
    loss, grads, table = _step(_ddp_model(), _batch(b=8, small=2, seed=3))
    assert (ddp_results[0]["loss"] + ddp_results[1]["loss"]) / 2 == pytest.approx(loss, abs=1e-4)
    for res in ddp_results:
        assert set(res["grads"]) == set(grads)
        for name, g in grads.items():
            assert torch.allclose(res["grads"][name], g, atol=1e-5, rtol=1e-4), name
        # the KNN table from the features of both ranks: the single-process table
        assert torch.equal(res["method_table"], table)
    assert not torch.equal(table, torch.arange(16)[:, None].repeat(1, 2))


def test_a_ddp_step_gathers_each_large_view_once(ddp_results):
    # one step + epoch end on 4 images per rank, 2 small crops, heads of 16 dims, 96
    # backbone features: each large view of g (z1, z2) and of phi (v1, v2) is gathered
    # once and serves every term; both views' weak labels come from one gather of their
    # 1-NN lists and are not gathered again by the losses
    long, f32 = torch.int64, torch.float32
    expected = collections.Counter({
        ("all_gather", (4, 16), f32): 4,  # z1, z2, v1, v2
        ("all_gather", (1, 2, 4), long): 1,  # the 1-NN lists of both phi views
        ("all_gather", (4,), long): 2,  # targets (weak-label purity), the bank's indexes
        ("all_gather", (1,), long): 1,  # the bank: rows per rank
        ("all_gather", (4, 96), f32): 1,  # the bank: features of the first large crop
        ("all_reduce", (8, 16), f32): 4,  # backward of the four gathers
        ("all_reduce", (2, 2), long): 1,  # epoch end: the table's fingerprint agreed ...
        ("all_reduce", (1,), f32): 1,  # ... and the verdict shared (all_ranks_agree)
    })
    for res in ddp_results:
        assert collections.Counter(res["collectives"]) == expected


def test_two_ddp_processes_build_the_same_bank_and_table(ddp_results):
    feats, order = _bank_data()
    bank = torch.zeros(N_BANK, F_BANK)
    filled = torch.zeros(N_BANK, dtype=torch.bool)
    for per_rank in _bank_steps(order):  # single process: the ranks' rows in rank order
        write_bank(bank, filled, torch.cat([_bank_rows(feats, i, r)
                                            for r, i in enumerate(per_rank)]),
                   torch.cat(per_rank))
    assert torch.allclose(bank[order[0]], feats[order[0]] + 0.01)  # the first write wins
    # every image but order[8] (never drawn) was written; it keeps itself as neighbours
    assert int(filled.sum()) == N_BANK - 1 and not bool(filled[order[8]])
    expected = table_from_bank(bank, filled, K_BANK, backend="torch")
    assert expected[order[8]].tolist() == [int(order[8])] * K_BANK
    for res in ddp_results:
        assert torch.equal(res["bank"], bank) and torch.equal(res["filled"], filled)
        assert res["agreed"] is True and torch.equal(res["table"], expected)
        assert res["agreed_other"] is False
        assert torch.equal(res["fixed"], ddp_results[0]["table"])


def test_purity_logging_follows_which_training_targets_are_known(cfg_factory):
    from clinfonce_plugin.methods.wcl import target_coverage

    assert target_coverage(None) == "some"
    assert target_coverage(SampleInfo(num_samples=3)) == "some"
    assert target_coverage(SampleInfo(num_samples=3, labels=np.array([0, 2, 1]))) == "all"
    assert target_coverage(SampleInfo(num_samples=3, labels=np.array([0, -1, 1]))) == "some"
    assert target_coverage(SampleInfo(num_samples=3, labels=np.full(3, -1))) == "none"
    targets = torch.tensor([0, 1, 2, 0, 2, 1, 2, 0])
    batch = _batch(targets=targets)
    for labels, logged in ((np.arange(16) % 3, True), (np.full(16, -1), False)):
        cfg = cfg_factory("wcl")
        model = host.METHODS["wcl"](cfg, sample_info=SampleInfo(num_samples=16, labels=labels))
        model.logged = {}
        model.log_dict = lambda d, **k: model.logged.update(
            {key: float(torch.as_tensor(v).detach()) for key, v in d.items()})
        with torch.no_grad():
            model.eval().training_step(batch, 0)
        assert ("weak_purity" in model.logged) is logged
        if logged:
            y1, y2 = _reference(model, batch)[1]["labels"]
            t = targets.tolist()
            assert model.logged["weak_purity"] == pytest.approx(
                (ref_purity(y1, t) + ref_purity(y2, t)) / 2)
