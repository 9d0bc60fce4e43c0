"""The workers' share of ``data.augment_on: device``: the CPU pipeline's random-resized crop
(same box for the same torch seed; pixels within 2 of 255, the uint8 rounding of torch's
and PIL's bicubic), uint8 CHW crops of each node's size, in the host's crop order, for
standard and KNN multi-crop datasets and under the augmentation schedule."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageFilter
from torchvision.transforms import v2 as T

from clinfonce_plugin.augment.worker import WorkerCrop, build_worker_transform
from clinfonce_plugin.config import AUGMENTATION, fill_section
from clinfonce_plugin.data.augmentation_schedule import EpochClock
from clinfonce_plugin.data.indexed import IndexedDataset
from clinfonce_plugin.data.knn_multicrop import KnnMultiCrop
from clinfonce_plugin.data.transforms import crop_pipelines, pretrain_transform
from tests.conftest import augmentation, make_cfg


def _photo(w=90, h=70, seed=0):
    """A textured RGB image (a wrong crop box shows as large pixel differences)."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return img.filter(ImageFilter.GaussianBlur(1.5))


def _cpu_rrc(size, scale):
    # the geometric op of the runtime's build_transform_pipeline
    return T.Compose([T.RandomResizedCrop(size, scale=scale, antialias=True,
                                          interpolation=T.InterpolationMode.BICUBIC),
                      T.PILToTensor()])


@pytest.mark.parametrize("size, scale", [(32, (0.08, 1.0)), (16, (0.1, 0.4)), (64, (0.5, 1.0))])
def test_worker_crop_is_the_cpu_pipelines_random_resized_crop(size, scale):
    img = _photo()
    ours, cpu = WorkerCrop(size, scale), _cpu_rrc(size, scale)
    worst = 0
    for seed in range(30):
        torch.manual_seed(seed)
        a = ours(img)
        torch.manual_seed(seed)
        b = cpu(img)
        assert a.dtype == torch.uint8 and a.shape == (3, size, size) and a.is_contiguous()
        worst = max(worst, int((a.int() - b.int()).abs().max()))
    assert worst <= 2


def test_worker_crop_without_rrc_is_resize_and_centre_crop():
    img = _photo(w=90, h=50)
    out = WorkerCrop(32, None)(img)
    ref = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
                     T.CenterCrop(32), T.PILToTensor()])(img)
    assert torch.equal(out, ref)


def test_worker_crop_accepts_a_numpy_image_and_refuses_other_types():
    arr = np.asarray(_photo())
    torch.manual_seed(0)
    a = WorkerCrop(16, (0.5, 1.0))(arr)
    torch.manual_seed(0)
    b = WorkerCrop(16, (0.5, 1.0))(Image.fromarray(arr))
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="PIL image"):
        WorkerCrop(16, (0.5, 1.0))("image.jpg")


def _device_cfg(nodes):
    """A run config with ``nodes`` filled with the schema's defaults, as the runner fills
    them (solo-learn's pipeline reads every key)."""
    cfg = make_cfg()
    cfg.augmentations = nodes
    for i in range(len(nodes)):
        fill_section(cfg, f"augmentations[{i}]", AUGMENTATION)
    cfg.data.augment_on = "device"
    return cfg


class Photos(torch.utils.data.Dataset):
    def __init__(self, n=6):
        self.images = [_photo(seed=i) for i in range(n)]
        self.targets = [i % 2 for i in range(n)]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def test_pretrain_transform_gives_uint8_crops_of_each_size_large_first():
    cfg = _device_cfg([augmentation(32, 2), augmentation(16, 3)])
    idx, crops, target = IndexedDataset(Photos(), pretrain_transform(cfg))[4]
    assert (idx, target) == (4, 0)
    assert [tuple(c.shape) for c in crops] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3
    assert all(c.dtype == torch.uint8 for c in crops)
    assert not torch.equal(crops[0], crops[1])  # independent boxes


def test_the_cpu_setting_keeps_the_hosts_float_pipeline():
    cfg = _device_cfg([augmentation(32, 2)])
    cfg.data.augment_on = "cpu"
    crops = pretrain_transform(cfg)(_photo())
    assert all(c.dtype == torch.float32 for c in crops)


def test_knn_multicrop_dataset_gives_uint8_crops_from_the_device_builders():
    cfg = _device_cfg([augmentation(32, 2), augmentation(16, 2)])
    large, small = crop_pipelines(cfg)
    assert [type(t).__name__ for t in large + small] == ["WorkerCrop"] * 4
    base = Photos()
    knn = KnnMultiCrop(len(base), k=2, warmup_epochs=0, backend="torch")
    idx, crops, _ = knn.make_dataset(base, large, small)[3]
    assert idx == 3
    assert [(c.dtype, tuple(c.shape)) for c in crops] == \
        [(torch.uint8, (3, 32, 32))] * 2 + [(torch.uint8, (3, 16, 16))] * 2


def test_the_schedule_switches_the_workers_crop_scale():
    weak = augmentation(32, 2)
    weak["rrc"] = {"enabled": False, "crop_min_scale": 0.08, "crop_max_scale": 1.0}
    cfg = _device_cfg([augmentation(32, 2)])
    cfg.warmup_augmentations = [weak]
    cfg.warmup_augmentation_epochs = 1
    clock = EpochClock()
    transform = pretrain_transform(cfg, clock)
    img = _photo()
    clock.set(0)
    first = transform(img)
    assert torch.equal(first[0], first[1])  # resize + centre crop: deterministic
    clock.set(1)
    later = transform(img)
    assert not torch.equal(later[0], later[1])


def test_build_worker_transform_reads_the_node():
    node = OmegaConf.create(augmentation(24, 2))
    t = build_worker_transform("synthetic_cub", node)
    assert (t.size, t.scale) == (24, (0.3, 1.0))
    node.rrc.enabled = False
    assert build_worker_transform("synthetic_cub", node).scale is None
