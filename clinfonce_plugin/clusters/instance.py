"""One cluster per image: Cl-InfoNCE reduces to SimCLR's instance discrimination.

Implements the instance-id special case of Cl-InfoNCE (https://arxiv.org/abs/2202.06670,
Sec. 3.2), which equals SimCLR (https://arxiv.org/abs/2002.05709).
"""
import numpy as np

from .base import ClusterProvider


class InstanceProvider(ClusterProvider):
    """Implements instance clusters (https://arxiv.org/abs/2202.06670, Sec. 3.2).

    ``ids = arange(N)``: the only positives of a view are the other views of its image.
    Takes no parameters.
    """

    name = "instance"
    PARAMS: dict = {}

    def _build(self) -> np.ndarray:
        return np.arange(self.info.num_samples, dtype=np.int64)
