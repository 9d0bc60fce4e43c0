"""CMC with the attribute vector as a second view: the attribute baseline of Cl-InfoNCE
(Table 2) that uses the auxiliary information directly instead of clustering it."""
from typing import Any, Dict, List, Optional, Sequence

import omegaconf
import torch
from omegaconf import open_dict

from clinfonce_plugin.clusters.attributes import binarize_attributes
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.config import ConfigError, fill_defaults
from clinfonce_plugin.methods.heads import PROJECTOR_KWARGS, ProjectionHeads, mlp
from clinfonce_plugin.host import BaseMethod
from clinfonce_plugin.losses import cross_view_infonce
from clinfonce_plugin.methods.training_split import given_sample_info

METHOD_KWARGS = {
    **PROJECTOR_KWARGS,
    "attr_hidden_dim": 512,
    "attr_num_layers": 2,
    "temperature": 0.1,
}


class CMCAttributes(ProjectionHeads, BaseMethod):
    """Implements Contrastive Multiview Coding (https://arxiv.org/abs/1906.05849) with the
    image and its attribute vector as the two views, the baseline of Cl-InfoNCE
    (https://arxiv.org/abs/2202.06670, Table 2) that treats auxiliary information as another
    view of the data.

    Image view: every crop (augmented as usual) through the backbone and the projector
    (``proj_*``, as clinfonce's), ``z_v``. Attribute view: the image's binary attribute
    vector (``SampleInfo.attributes``, multi-valued columns one-hot binarised as for the
    attribute clusters) through an MLP (``attr_*``) to the same dimension, ``a``. The loss
    is CMC's in both directions, averaged over the crops:
    ``(1 / V) sum_v [L(z_v -> a) + L(a -> z_v)]`` (``losses.cross_view_infonce``, the
    gathered batch as negatives). The binarised attribute table is the buffer
    ``attribute_table`` (N, B) uint8, indexed by dataset index.

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int), proj_output_dim (int), proj_num_layers (int): the image
                projector (proj_output_dim is also the attribute embedding's dimension).
            attr_hidden_dim (int), attr_num_layers (int): the attribute MLP (B inputs).
            temperature (float): softmax temperature tau.
    """

    uses_sample_info = True

    def __init__(self, cfg: omegaconf.DictConfig, sample_info: Optional[SampleInfo] = None):
        super().__init__(cfg)
        kw = cfg.method_kwargs
        info = given_sample_info("cmc_attributes", sample_info)
        if info.attributes is None:
            raise ValueError(f"cmc_attributes needs an attribute vector per training image, "
                             f"but dataset {cfg.data.dataset!r} provides none")
        table, self.attribute_names = binarize_attributes(info.attributes,
                                                          info.attribute_names)
        self.register_buffer("attribute_table", torch.as_tensor(table))
        # identical on every rank: DDP need not broadcast it every step
        self._ddp_params_and_buffers_to_ignore = ["attribute_table"]
        self.temperature: float = kw.temperature
        self.add_head("projector", "z", kw)
        self.attribute_encoder = mlp(table.shape[1], kw.attr_hidden_dim, kw.proj_output_dim,
                                     kw.attr_num_layers)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = super(CMCAttributes, CMCAttributes).add_and_assert_specific_cfg(cfg)
        with open_dict(cfg):
            kw = fill_defaults(cfg, "method_kwargs", METHOD_KWARGS)
            if kw.temperature <= 0:
                raise ConfigError(f"method_kwargs.temperature must be > 0, got {kw.temperature}")
            for key in ("proj_hidden_dim", "proj_output_dim", "proj_num_layers",
                        "attr_hidden_dim", "attr_num_layers"):
                if kw[key] < 1:
                    raise ConfigError(f"method_kwargs.{key} must be >= 1, got {kw[key]}")
        return cfg

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        return super().learnable_params + [
            {"name": "attribute_encoder", "params": self.attribute_encoder.parameters()}]

    def embed_attributes(self, indexes: torch.Tensor) -> torch.Tensor:
        """(B, proj_output_dim) attribute-view embeddings of the dataset indexes."""
        return self.attribute_encoder(self.attribute_table[indexes].float())

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes = batch[0]
        out = super().training_step(batch, batch_idx)
        a = self.embed_attributes(indexes)
        loss = sum(cross_view_infonce(z, a, self.temperature) for z in out["z"]) / len(out["z"])
        self.log("train_cmc_loss", loss, on_epoch=True, sync_dist=True)
        return loss + out["loss"]
