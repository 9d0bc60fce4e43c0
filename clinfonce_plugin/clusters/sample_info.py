"""What a dataset knows about its samples, in the form cluster providers consume.

Readers in ``clinfonce_plugin.data`` fill it; providers in ``clinfonce_plugin.clusters``
read it. It is plain numpy so that neither side depends on the other's classes.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np


@dataclass
class SampleInfo:
    """Per-sample side information of a dataset, indexed by dataset index 0..N-1.

    Attributes:
        num_samples: N.
        labels: (N,) int64 class index per sample, -1 where unknown.
        class_names: class index -> class identifier (e.g. CUB "001.Black_footed_Albatross"
            or an ImageNet wnid "n01440764"); used to place labels in a hierarchy.
        attributes: (N, A) integer attribute values per sample (binary 0/1, or small
            non-negative integers for multi-valued attributes).
        attribute_names: A names, one per attribute column.
        paths: N image paths relative to the dataset root, used to key precomputed files.
        root: dataset root directory, for providers that resolve relative files.
        hierarchy: (parent, child) class-name pairs the dataset defines itself (CIFAR-100:
            superclass -> class), used by the ``hierarchy`` provider when no pairs file
            is given.
        titles: readable name of a class or hierarchy node identifier, for logs, tables and
            plots (ImageNet: wnid -> "tench, Tinca tinca" from words.txt or
            LOC_synset_mapping.txt); identifiers without one are shown as they are.
    """

    num_samples: int
    labels: Optional[np.ndarray] = None
    class_names: Optional[List[str]] = None
    attributes: Optional[np.ndarray] = None
    attribute_names: Optional[List[str]] = None
    paths: Optional[List[str]] = None
    root: Optional[str] = None
    hierarchy: Optional[List[Tuple[str, str]]] = None
    titles: Optional[Dict[str, str]] = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.num_samples
        if n <= 0:
            raise ValueError(f"SampleInfo needs at least one sample, got num_samples={n}")
        for name in ("labels", "attributes", "paths"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(
                    f"SampleInfo.{name} has {len(value)} rows, expected num_samples={n}"
                )
        if self.attributes is not None and self.attribute_names is not None:
            if np.asarray(self.attributes).shape[1] != len(self.attribute_names):
                raise ValueError(
                    f"SampleInfo.attributes has {np.asarray(self.attributes).shape[1]} columns "
                    f"but {len(self.attribute_names)} attribute_names"
                )

    def title(self, name: str) -> str:
        """The readable name of a class or node identifier (the identifier without one)."""
        return self.titles.get(name, name) if self.titles else name

    def class_title(self, label: int) -> str:
        """The readable name of class ``label`` (its index as text without class names)."""
        if not self.class_names:
            return str(label)
        return self.title(str(self.class_names[label]))
