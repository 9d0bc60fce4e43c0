"""Synthetic CUB: a deterministic, tiny dataset in EXACTLY the CUB-200-2011 on-disk layout.

It is the embedded default dataset for demos, tests and benchmarks of the Cl-InfoNCE
(Tsai et al., ICLR 2022, https://arxiv.org/abs/2202.06670) plugin: it is generated in
seconds on a CPU, never downloaded, and read by the same reader as the real CUB
(``clinfonce_plugin.data.cub.read_cub``).

    python -m clinfonce_plugin.data.synthetic_cub --root datasets/synthetic_cub [--seed 0]

What the generator controls
---------------------------
The paper's claims are about *how much label information the clusters carry*: clusters built
from auxiliary attributes sit between instance ids (SimCLR, no label information) and the
labels themselves (SupCon). So the generator makes that amount a parameter:

* **Images are rendered from their TRUE attributes.** Each RGB image (``image_size``, 32 by
  default) is a "bird": a body (shape, size, colour, pattern drawn in the wing colour), a
  wing patch, a tail (shape, wing colour) and an eye (colour), on a cluttered background.
  31 binary attributes in 7 CUB-style groups, one-hot within each group in the true
  attributes (``GROUPS``)::

      has_body_color (8)  has_wing_color (6)  has_body_shape (4)  has_body_pattern (4)
      has_size (3)        has_tail_shape (3)  has_eye_color (3)

  Attributes differ in visual salience on purpose (colour, shape, pattern, size are large;
  tail shape and eye colour are a few pixels), like CUB's.
* **Nuisance that a linear model on pixels cannot undo:** position, scale jitter (size
  classes overlap a little), small rotation, facing left/right, background colour and
  texture (flat, gradient, blotches, grain), random-coloured distractor blobs, brightness,
  pixel noise and JPEG.
* **Labels are only partly determined by attributes.** Each class has a prototype value per
  group; an image's true value equals the prototype with probability ``prototype_prob``,
  else one of the other values uniformly. ``num_classes`` classes share only
  ``num_prototypes`` prototypes: classes with identical prototypes differ only in an
  *un-annotated* cue, an appendage of the silhouette (none / a crest on top / a wattle
  below, drawn in the body colour, of size ``cue_scale``: it survives colour jitter and
  horizontal flips). Every class has a cue, so the cue does not flag twins. Attribute
  clusters therefore carry label information but are not the labels.
* **Annotations are noisy like CUB's MTurk labels.** Per image and group a certainty id
  1-4 (not visible / guessing / probably / definitely) is drawn with CUB-like frequencies;
  every annotated ``is_present`` is the true bit flipped with a probability that falls with
  certainty (relative weights 3 : 2 : 1 : 0.4) and averages ``flip_prob``. Annotations are
  therefore not one-hot, as in CUB. The true attributes are kept in
  ``attributes/true_attributes.npy`` for tests (the reader ignores unknown files).

Statistics of the default dataset, and the variant the benchmarks use, are in
``docs/datasets.md``.

Files written (the CUB layout, plus extras the CUB reader ignores)::

    images.txt  image_class_labels.txt  train_test_split.txt  classes.txt
    bounding_boxes.txt  attributes.txt  README  synthetic_cub.json (manifest)
    images/<NNN.Class_Name>/<Class_Name>_<k>_<image_id>.jpg
    attributes/image_attribute_labels.txt  attributes/certainties.txt
    attributes/class_attribute_labels_continuous.txt  attributes/true_attributes.npy

Everything is a function of the parameters (seed included): the same parameters give the same
bytes. The dataset is written to a temporary directory beside ``root`` and renamed at the
end, so ``root`` is never half-written; an existing ``root`` whose manifest records the same
parameters is reused.
"""
import argparse
import io
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

GENERATOR_VERSION = 1
MANIFEST = "synthetic_cub.json"

# The benchmark variant (dataset ``synthetic_cub_bench``; bench/quality.py and the zoo's
# models). The defaults (prototype_prob 0.8, 60 images per class) make a dataset on which SSL
# nearest neighbours carry almost no class information (SimCLR's leave-one-out 1-NN accuracy
# equals raw pixels', and ~10 % of the pairs WCL's 1-NN graph joins share the class,
# `bench/neighbour_quality.py`), so WCL's premise fails there. Classes closer to their
# prototypes and twice the images give neighbourhoods that carry the class (docs/results.md).
# A 1.6x larger un-annotated cue (the only thing telling classes that share a prototype apart)
# makes the label information the attributes lack learnable in the benchmark's budget; at the
# default size not even SupCon learned it (docs/results.md).
BENCHMARK = {"seed": 0, "prototype_prob": 0.95, "images_per_class": 120, "cue_scale": 1.6}

# (group name, values); attribute names are "<group>::<value>" like CUB's.
GROUPS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("has_body_color", ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")),
    ("has_wing_color", ("black", "white", "grey", "buff", "olive", "navy")),
    ("has_body_shape", ("round", "square", "triangular", "diamond")),
    ("has_body_pattern", ("solid", "striped", "spotted", "checkered")),
    ("has_size", ("small", "medium", "large")),
    ("has_tail_shape", ("pointed", "forked", "rounded")),
    ("has_eye_color", ("black", "red", "white")),
)
GROUP_SIZES = tuple(len(values) for _, values in GROUPS)
ATTRIBUTE_NAMES = tuple(f"{group}::{value}" for group, values in GROUPS for value in values)
BODY_COLOR, WING_COLOR, SHAPE, PATTERN, SIZE, TAIL, EYE = range(len(GROUPS))

BODY_RGB = np.array([(0.86, 0.12, 0.12), (0.96, 0.55, 0.10), (0.95, 0.88, 0.15),
                     (0.16, 0.66, 0.20), (0.10, 0.78, 0.82), (0.14, 0.26, 0.86),
                     (0.52, 0.18, 0.70), (0.98, 0.52, 0.74)])
WING_RGB = np.array([(0.06, 0.06, 0.06), (0.96, 0.96, 0.96), (0.55, 0.55, 0.55),
                     (0.87, 0.76, 0.55), (0.42, 0.44, 0.14), (0.08, 0.10, 0.40)])
EYE_RGB = np.array([(0.0, 0.0, 0.0), (0.92, 0.05, 0.05), (1.0, 1.0, 1.0)])
SIZE_RADIUS = (5.5, 7.5, 9.5)  # body half-extent in pixels of a 32x32 image
CUES = ("plain", "crested", "wattled")  # un-annotated appendage shared by no attribute
CUE_NOUNS = ("Finch", "Crested_Finch", "Wattled_Finch")

# CUB's certainties.txt, and how often each certainty is drawn.
CERTAINTY_NAMES = ("not visible", "guessing", "probably", "definitely")
CERTAINTY_FREQ = np.array([0.10, 0.15, 0.30, 0.45])
# Relative annotation-flip rate per certainty (low certainty = more errors).
FLIP_WEIGHT = np.array([3.0, 2.0, 1.0, 0.4])
MAX_FLIP_PROB = float(CERTAINTY_FREQ @ FLIP_WEIGHT / FLIP_WEIGHT.max())
JPEG_QUALITY = 95
SUPERSAMPLE = 2  # render at 2x and average: anti-aliased edges


@dataclass(frozen=True)
class SyntheticCubConfig:
    """Parameters of the generator; all of them are recorded in the manifest.

    Attributes:
        seed: seed of every random choice.
        num_classes: number of species C (at most 999, CUB's "NNN." prefix).
        images_per_class: images per species.
        num_prototypes: distinct attribute prototypes, ceil(C/3) <= P <= C; C - P classes
            share a prototype with another class and differ only in the un-annotated cue.
            None: round(2 C / 3).
        prototype_prob: probability that an image's true value of a group is its class
            prototype's.
        flip_prob: mean probability that an annotated is_present differs from the truth.
        cue_scale: size of the un-annotated cue (crest, wattle) relative to the default
            (1.0). The cue is the only thing that tells classes sharing a prototype apart,
            so it sets how much label information a label-supervised model can learn
            beyond the attributes at a given budget.
        train_fraction: fraction of each class in the train split.
        image_size: side of the square RGB images.
    """

    seed: int = 0
    num_classes: int = 30
    images_per_class: int = 60
    num_prototypes: Optional[int] = None
    prototype_prob: float = 0.8
    flip_prob: float = 0.08
    train_fraction: float = 0.5
    image_size: int = 32
    cue_scale: float = 1.0

    def __post_init__(self) -> None:
        def bad(what: str) -> ValueError:
            return ValueError(f"SyntheticCubConfig: {what}")

        if not isinstance(self.seed, int) or self.seed < 0:
            raise bad(f"seed must be a non-negative int, got {self.seed!r}")
        if not 2 <= self.num_classes <= 999:
            raise bad(f"num_classes must be in [2, 999], got {self.num_classes}")
        n_train = round(self.images_per_class * self.train_fraction)
        if not 0.0 < self.train_fraction < 1.0:
            raise bad(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.images_per_class < 2 or not 1 <= n_train < self.images_per_class:
            raise bad(f"images_per_class={self.images_per_class} with train_fraction="
                      f"{self.train_fraction} leaves a class without train or test images")
        low = -(-self.num_classes // len(CUES))
        if not low <= self.resolved_num_prototypes <= self.num_classes:
            raise bad(f"num_prototypes must be in [{low}, {self.num_classes}] (at most "
                      f"{len(CUES)} classes per prototype), got {self.num_prototypes}")
        if not 0.0 < self.prototype_prob <= 1.0:
            raise bad(f"prototype_prob must be in (0, 1], got {self.prototype_prob}")
        if not 0.0 <= self.flip_prob <= MAX_FLIP_PROB:
            raise bad(f"flip_prob must be in [0, {MAX_FLIP_PROB:.3f}], got {self.flip_prob}")
        if self.image_size < 16:
            raise bad(f"image_size must be >= 16, got {self.image_size}")
        if not 0.5 <= self.cue_scale <= 3.0:
            raise bad(f"cue_scale must be in [0.5, 3.0], got {self.cue_scale}")

    @property
    def resolved_num_prototypes(self) -> int:
        if self.num_prototypes is None:
            return max(-(-self.num_classes // len(CUES)), round(2 * self.num_classes / 3))
        return self.num_prototypes

    @property
    def num_images(self) -> int:
        return self.num_classes * self.images_per_class


# ----------------------------------------------------------------------------- sampling


@dataclass
class _Design:
    """Class structure and per-image tabular data (no pixels)."""

    prototypes: np.ndarray      # (P, G) value index per group
    class_prototype: np.ndarray  # (C,) prototype id of each class
    class_cue: np.ndarray       # (C,) cue id of each class
    labels: np.ndarray          # (N,) class of each image
    is_train: np.ndarray        # (N,) bool
    true_values: np.ndarray     # (N, G) true value index per group
    certainty: np.ndarray       # (N, G) certainty id 1..4 per group
    annotated: np.ndarray       # (N, A) uint8 annotated is_present
    times: np.ndarray           # (N, A) seconds the fake annotator took


def _one_hot(values: np.ndarray) -> np.ndarray:
    """(N, G) value indices -> (N, A) uint8 one-hot within each group."""
    offsets = np.concatenate([[0], np.cumsum(GROUP_SIZES)[:-1]])
    out = np.zeros((len(values), sum(GROUP_SIZES)), dtype=np.uint8)
    out[np.arange(len(values))[:, None], offsets + values] = 1
    return out


def _sample_prototypes(rng: np.random.Generator, count: int) -> np.ndarray:
    """count distinct prototypes that differ in at least 2 groups pairwise."""
    prototypes: List[np.ndarray] = []
    while len(prototypes) < count:
        candidate = np.array([rng.integers(size) for size in GROUP_SIZES])
        if all((candidate != p).sum() >= 2 for p in prototypes):
            prototypes.append(candidate)
    return np.stack(prototypes)


def _design(cfg: SyntheticCubConfig) -> _Design:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    n_proto = cfg.resolved_num_prototypes
    prototypes = _sample_prototypes(rng, n_proto)
    # Every prototype gets one class; the remaining classes join other prototypes, pairs
    # before triples, so sharing is spread out.
    owners = list(range(n_proto))
    extra = cfg.num_classes - n_proto
    pairs = rng.permutation(n_proto)[: min(extra, n_proto)].tolist()
    triples = rng.permutation(pairs)[: extra - len(pairs)].tolist()
    members = owners + pairs + triples
    class_prototype = np.array(members)[rng.permutation(cfg.num_classes)]
    class_cue = np.zeros(cfg.num_classes, dtype=np.int64)
    for p in range(n_proto):
        same = np.flatnonzero(class_prototype == p)
        class_cue[same] = rng.permutation(len(CUES))[: len(same)]

    per = cfg.images_per_class
    labels = np.repeat(np.arange(cfg.num_classes), per)
    n_train = round(per * cfg.train_fraction)
    is_train = np.zeros(cfg.num_images, dtype=bool)
    for c in range(cfg.num_classes):
        is_train[c * per + rng.permutation(per)[:n_train]] = True

    n, g = cfg.num_images, len(GROUPS)
    sizes = np.array(GROUP_SIZES)
    proto_values = prototypes[class_prototype[labels]]
    keep = rng.random((n, g)) < cfg.prototype_prob
    other = (proto_values + rng.integers(1, sizes, size=(n, g))) % sizes  # uniform over others
    true_values = np.where(keep, proto_values, other)

    certainty = rng.choice(4, p=CERTAINTY_FREQ, size=(n, g)) + 1
    base = cfg.flip_prob / float(CERTAINTY_FREQ @ FLIP_WEIGHT)
    flip_rate = np.repeat(base * FLIP_WEIGHT[certainty - 1], GROUP_SIZES, axis=1)
    flips = rng.random(flip_rate.shape) < flip_rate
    annotated = _one_hot(true_values) ^ flips.astype(np.uint8)
    times = rng.uniform(0.5, 30.0, size=annotated.shape)
    return _Design(prototypes, class_prototype, class_cue, labels, is_train, true_values,
                   certainty, annotated, times)


# ----------------------------------------------------------------------------- rendering


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a (h, w, 3) grid to (size, size, 3)."""
    h, w = grid.shape[:2]
    ys = np.linspace(0, h - 1, size)
    xs = np.linspace(0, w - 1, size)
    y0 = np.minimum(ys.astype(int), h - 2)
    x0 = np.minimum(xs.astype(int), w - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _background(rng: np.random.Generator, size: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    grey = rng.uniform(0.3, 0.8)
    tint = rng.random(3)
    sat = rng.uniform(0.0, 0.5)
    canvas = np.broadcast_to(grey * (1 - sat) + tint * sat, (size, size, 3)).copy()
    kind = rng.integers(4)
    if kind == 1:  # linear gradient
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (x * np.cos(angle) + y * np.sin(angle)) / size
        canvas += (rng.uniform(0.1, 0.3) * (ramp - ramp.mean()))[..., None]
    elif kind == 2:  # blotches
        canvas += _upsample(rng.normal(0, 0.12, size=(5, 5, 3)), size)
    elif kind == 3:  # grain
        canvas += rng.normal(0, 0.06, size=(size // SUPERSAMPLE, size // SUPERSAMPLE, 3)
                             ).repeat(SUPERSAMPLE, 0).repeat(SUPERSAMPLE, 1)
    return canvas


def _body_mask(shape: int, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    if shape == 0:
        return u ** 2 + v ** 2 <= r ** 2
    if shape == 1:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.88 * r
    if shape == 2:  # apex up
        return (v <= 0.7 * r) & (np.abs(u) <= (v + 1.1 * r) * 0.583)
    return np.abs(u) + np.abs(v) <= 1.25 * r


# Extent of each body shape towards the back (u < 0), the top and the bottom, in units of r.
_BACK = (1.0, 0.88, 0.64, 1.25)
_TOP = (1.0, 0.88, 1.1, 1.25)
_BOTTOM = (1.0, 0.88, 0.7, 1.25)


def _render(cfg: SyntheticCubConfig, values: np.ndarray, cue: int, image_index: int
            ) -> Tuple[np.ndarray, Tuple[float, float, float, float]]:
    """(size, size, 3) uint8 image of one bird and its bounding box (x, y, w, h)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1, image_index]))
    k = cfg.image_size / 32.0  # geometry is specified for 32x32 images
    hi = cfg.image_size * SUPERSAMPLE
    y, x = (np.mgrid[0:hi, 0:hi] + 0.5) / SUPERSAMPLE  # pixel-centre coordinates
    canvas = _background(rng, hi, x, y)

    for _ in range(rng.choice(3, p=(0.35, 0.4, 0.25))):  # distractors behind the bird
        cx, cy = rng.uniform(0, cfg.image_size, 2)
        if rng.random() < 0.5:
            mask = (x - cx) ** 2 + (y - cy) ** 2 <= (rng.uniform(1.2, 2.8) * k) ** 2
        else:
            a = rng.uniform(0, np.pi)
            along = (x - cx) * np.cos(a) + (y - cy) * np.sin(a)
            across = -(x - cx) * np.sin(a) + (y - cy) * np.cos(a)
            mask = (np.abs(along) <= rng.uniform(1.5, 3.5) * k) & (np.abs(across) <= 0.6 * k)
        canvas[mask] = rng.random(3)

    shape, size = values[SHAPE], values[SIZE]
    r = SIZE_RADIUS[size] * rng.uniform(0.9, 1.12) * k
    room = max(0.0, cfg.image_size / 2 - 1.25 * r - 1)
    cx, cy = cfg.image_size / 2 + rng.uniform(-room, room, 2)
    theta = np.deg2rad(rng.uniform(-12, 12))
    facing = 1.0 if rng.random() < 0.5 else -1.0  # mirror: the bird faces right or left
    u = facing * ((x - cx) * np.cos(theta) + (y - cy) * np.sin(theta))
    v = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)

    body_rgb = np.clip(BODY_RGB[values[BODY_COLOR]] + rng.normal(0, 0.035, 3), 0, 1)
    wing_rgb = np.clip(WING_RGB[values[WING_COLOR]] + rng.normal(0, 0.035, 3), 0, 1)

    # tail, behind the body, in the wing colour
    u0 = -(_BACK[shape] - 0.1) * r
    length, half = 0.75 * r, 0.38 * r
    t = (u0 - u) / length
    along_tail = (t >= 0) & (t <= 1)
    tail_shape = values[TAIL]
    if tail_shape == 0:
        tail = along_tail & (np.abs(v) <= half * (1 - t))
    elif tail_shape == 1:
        tail = along_tail & (np.minimum(np.abs(v - half * t), np.abs(v + half * t))
                             <= 0.13 * r + 0.35 * k)
    else:
        tail = (u <= u0) & ((u - u0) ** 2 + v ** 2 <= (0.55 * r) ** 2)
    canvas[tail] = wing_rgb

    # the un-annotated cue: an appendage of the silhouette, in the body colour
    c = cfg.cue_scale
    if cue == 1:  # crest: a spike on top
        base = -(_TOP[shape] - 0.15) * r
        h = (base - v) / (0.65 * c * r)
        appendage = (h >= 0) & (h <= 1) & (np.abs(u) <= 0.38 * c * r * (1 - h))
    elif cue == 2:  # wattle: a round lobe below
        centre = (_BOTTOM[shape] + 0.12 * c) * r
        appendage = u ** 2 + (v - centre) ** 2 <= (0.32 * c * r) ** 2
    else:
        appendage = np.zeros_like(tail)
    body = _body_mask(shape, u, v, r)
    canvas[body | appendage] = body_rgb

    pattern = values[PATTERN]
    if pattern == 1:  # stripes at a random angle and period
        a = rng.uniform(0, np.pi)
        phase = ((u * np.cos(a) + v * np.sin(a)) / (rng.uniform(3.0, 4.2) * k) + rng.random()) % 1
        marks = phase < 0.45
    elif pattern == 2:  # spots on a lattice
        period = rng.uniform(4.0, 5.0) * k
        du = ((u / period + rng.random()) % 1 - 0.5) * period
        dv = ((v / period + rng.random()) % 1 - 0.5) * period
        marks = du ** 2 + dv ** 2 <= (rng.uniform(0.9, 1.2) * k) ** 2
    elif pattern == 3:  # checkerboard
        cell = rng.uniform(2.6, 3.4) * k
        marks = (np.floor(u / cell + rng.random()) + np.floor(v / cell + rng.random())) % 2 == 0
    else:
        marks = np.zeros_like(body)
    canvas[body & marks] = wing_rgb
    wing = ((u + 0.15 * r) / (0.5 * r)) ** 2 + ((v - 0.1 * r) / (0.28 * r)) ** 2 <= 1
    canvas[wing] = wing_rgb
    eye = (u - 0.3 * r) ** 2 + (v + 0.25 * r) ** 2 <= (1.2 * k) ** 2
    canvas[eye] = EYE_RGB[values[EYE]]

    bird = body | appendage | tail
    ys, xs = np.nonzero(bird)
    s = SUPERSAMPLE
    x0, y0 = xs.min(), ys.min()
    bbox = (x0 / s, y0 / s, (xs.max() - x0 + 1) / s, (ys.max() - y0 + 1) / s)

    size_px = cfg.image_size
    image = canvas.reshape(size_px, s, size_px, s, 3).mean(axis=(1, 3))
    image = image * rng.uniform(0.88, 1.12) + rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), bbox


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma: at 32x32 the default 4:2:0 subsampling would wash out patterns
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


# ----------------------------------------------------------------------------- writing


def _class_names(cfg: SyntheticCubConfig, design: _Design) -> List[str]:
    names = []
    for c in range(cfg.num_classes):
        proto = design.prototypes[design.class_prototype[c]]
        colour = GROUPS[BODY_COLOR][1][proto[BODY_COLOR]].capitalize()
        pattern = GROUPS[PATTERN][1][proto[PATTERN]].capitalize()
        names.append(f"{c + 1:03d}.{colour}_{pattern}_{CUE_NOUNS[design.class_cue[c]]}")
    return names


def _write_text(path: Path, lines: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))


def _manifest(cfg: SyntheticCubConfig, design: _Design, class_names: List[str]) -> dict:
    return {
        "generator": "clinfonce_plugin.data.synthetic_cub",
        "version": GENERATOR_VERSION,
        "params": asdict(cfg),
        "num_images": cfg.num_images,
        "num_train": int(design.is_train.sum()),
        "attribute_groups": {group: list(values) for group, values in GROUPS},
        "cues": list(CUES),
        "classes": [
            {
                "name": class_names[c],
                "prototype_id": int(design.class_prototype[c]),
                "prototype": {group: values[design.prototypes[design.class_prototype[c]][g]]
                              for g, (group, values) in enumerate(GROUPS)},
                "cue": CUES[design.class_cue[c]],
            }
            for c in range(cfg.num_classes)
        ],
    }


def _write_dataset(out: Path, cfg: SyntheticCubConfig) -> None:
    design = _design(cfg)
    class_names = _class_names(cfg, design)
    (out / "attributes").mkdir(parents=True)
    image_lines, label_lines, split_lines, bbox_lines = [], [], [], []
    for i in range(cfg.num_images):
        image_id, c = i + 1, int(design.labels[i])
        class_dir = out / "images" / class_names[c]
        class_dir.mkdir(parents=True, exist_ok=True)
        stem = class_names[c].split(".", 1)[1]
        name = f"{class_names[c]}/{stem}_{i % cfg.images_per_class + 1:04d}_{image_id}.jpg"
        pixels, (bx, by, bw, bh) = _render(cfg, design.true_values[i], int(design.class_cue[c]), i)
        (out / "images" / name).write_bytes(_jpeg(pixels))
        image_lines.append(f"{image_id} {name}")
        label_lines.append(f"{image_id} {c + 1}")
        split_lines.append(f"{image_id} {int(design.is_train[i])}")
        bbox_lines.append(f"{image_id} {bx:.1f} {by:.1f} {bw:.1f} {bh:.1f}")
    _write_text(out / "images.txt", image_lines)
    _write_text(out / "image_class_labels.txt", label_lines)
    _write_text(out / "train_test_split.txt", split_lines)
    _write_text(out / "bounding_boxes.txt", bbox_lines)
    _write_text(out / "classes.txt", [f"{c + 1} {n}" for c, n in enumerate(class_names)])
    _write_text(out / "attributes.txt", [f"{a + 1} {n}" for a, n in enumerate(ATTRIBUTE_NAMES)])
    _write_text(out / "attributes" / "certainties.txt",
                [f"{k + 1} {n}" for k, n in enumerate(CERTAINTY_NAMES)])

    n, a = design.annotated.shape
    certainty = np.repeat(design.certainty, GROUP_SIZES, axis=1)
    _write_text(out / "attributes" / "image_attribute_labels.txt", [
        f"{i + 1} {j + 1} {design.annotated[i, j]} {certainty[i, j]} {design.times[i, j]:.4f}"
        for i in range(n) for j in range(a)
    ])
    percent = [100.0 * design.annotated[design.labels == c].mean(axis=0)
               for c in range(cfg.num_classes)]
    _write_text(out / "attributes" / "class_attribute_labels_continuous.txt",
                [" ".join(f"{p:.12f}" for p in row) for row in percent])
    with open(out / "attributes" / "true_attributes.npy", "wb") as f:
        np.save(f, _one_hot(design.true_values))
    _write_text(out / "README", [
        "Synthetic CUB: a synthetic dataset in the CUB-200-2011 layout, written by",
        "clinfonce_plugin.data.synthetic_cub (see its module docstring).",
        f"Parameters: {json.dumps(asdict(cfg), sort_keys=True)}",
        "attributes/true_attributes.npy: (N, A) uint8 true attributes, rows in images.txt order.",
        f"{MANIFEST}: parameters, attribute groups, class prototypes and cues.",
    ])
    # The manifest is written last: its presence marks a complete dataset.
    _write_text(out / MANIFEST, [json.dumps(_manifest(cfg, design, class_names), indent=1)])


def _check_existing(root: Path, cfg: SyntheticCubConfig) -> Optional[str]:
    """None when root holds a complete dataset generated with cfg, else the reason why not."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no readable {MANIFEST}"
    if manifest.get("version") != GENERATOR_VERSION:
        return f"generator version {manifest.get('version')} != {GENERATOR_VERSION}"
    params = manifest.get("params")
    if isinstance(params, dict) and "cue_scale" not in params:
        params = {**params, "cue_scale": 1.0}  # written before cue_scale existed
    if params != asdict(cfg):
        return f"parameters {params} != {asdict(cfg)}"
    try:
        names = [line.split(None, 1)[1] for line in
                 (root / "images.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, IndexError):
        return "unreadable images.txt"
    if len(names) != cfg.num_images or not all((root / "images" / n).is_file() for n in names):
        return "images missing"
    return None


def generate_synthetic_cub(root: Union[str, Path], seed: int = 0, num_classes: int = 30,
                           images_per_class: int = 60, num_prototypes: Optional[int] = None,
                           prototype_prob: float = 0.8, flip_prob: float = 0.08,
                           train_fraction: float = 0.5, image_size: int = 32,
                           cue_scale: float = 1.0, overwrite: bool = False) -> Path:
    """Writes the synthetic CUB dataset to ``root`` (the CUB_200_2011-like directory).

    Parameters are those of ``SyntheticCubConfig``. When ``root`` already holds a complete
    dataset with the same parameters it is reused; when it holds anything else a ValueError
    is raised unless ``overwrite`` (then it is replaced). Returns ``root`` as a Path.
    """
    cfg = SyntheticCubConfig(seed=seed, num_classes=num_classes,
                             images_per_class=images_per_class, num_prototypes=num_prototypes,
                             prototype_prob=prototype_prob, flip_prob=flip_prob,
                             train_fraction=train_fraction, image_size=image_size,
                             cue_scale=cue_scale)
    # record the resolved prototype count, so an explicit default matches the manifest
    cfg = replace(cfg, num_prototypes=cfg.resolved_num_prototypes)
    root = Path(root)
    if root.exists():
        reason = _check_existing(root, cfg)
        if reason is None:
            return root
        if not overwrite:
            raise ValueError(f"{root} exists but is not a synthetic CUB dataset with these "
                             f"parameters ({reason}); pass overwrite=True (--overwrite) or "
                             f"choose another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write_dataset(tmp, cfg)
        if root.exists():
            if _check_existing(root, cfg) is None:  # another process finished first
                shutil.rmtree(tmp)
                return root
            old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(root, old)
            os.rename(tmp, root)
            shutil.rmtree(old)
        else:
            try:
                os.rename(tmp, root)
            except OSError:
                # a concurrent writer renamed its copy first: keep theirs if it is ours too
                if _check_existing(root, cfg) is not None:
                    raise
                shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def main(argv: Optional[List[str]] = None) -> None:
    defaults = SyntheticCubConfig()
    parser = argparse.ArgumentParser(
        prog="python -m clinfonce_plugin.data.synthetic_cub",
        description="Write the synthetic CUB dataset (CUB-200-2011 layout) to --root.")
    parser.add_argument("--root", required=True, help="output directory (like CUB_200_2011)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--num-classes", type=int, default=defaults.num_classes)
    parser.add_argument("--images-per-class", type=int, default=defaults.images_per_class)
    parser.add_argument("--num-prototypes", type=int, default=None)
    parser.add_argument("--prototype-prob", type=float, default=defaults.prototype_prob)
    parser.add_argument("--flip-prob", type=float, default=defaults.flip_prob)
    parser.add_argument("--train-fraction", type=float, default=defaults.train_fraction)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--cue-scale", type=float, default=defaults.cue_scale)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace root if it holds something else")
    args = parser.parse_args(argv)
    try:
        root = generate_synthetic_cub(
            args.root, seed=args.seed, num_classes=args.num_classes,
            images_per_class=args.images_per_class, num_prototypes=args.num_prototypes,
            prototype_prob=args.prototype_prob, flip_prob=args.flip_prob,
            train_fraction=args.train_fraction, image_size=args.image_size,
            cue_scale=args.cue_scale, overwrite=args.overwrite)
    except ValueError as err:
        parser.error(str(err))
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    print(f"synthetic CUB at {root}: {manifest['num_images']} images "
          f"({manifest['num_train']} train), {len(manifest['classes'])} classes, "
          f"{len(ATTRIBUTE_NAMES)} attributes")


if __name__ == "__main__":
    main()
