"""PCL as a host method: a projector, the kmeans provider, and ProtoNCE (instance InfoNCE +
the prototype term with per-cluster concentrations)."""
from typing import Any, Dict, Optional, Sequence

import numpy as np
import omegaconf
import torch
from omegaconf import OmegaConf, open_dict

from clinfonce_plugin.config import ConfigError, fill_defaults
from clinfonce_plugin.clusters.concentration import concentration
from clinfonce_plugin.clusters.kmeans import KMeansProvider, granularity_buffer_name
from clinfonce_plugin.clusters.registry import build_from_spec
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.methods.heads import PROJECTOR_KWARGS, ProjectionHeads
from clinfonce_plugin.host import BaseMethod
from clinfonce_plugin.losses import cl_infonce, proto_nce
from clinfonce_plugin.methods.dynamic_clusters import DynamicClusters
from clinfonce_plugin.utils.distributed import get_rank, get_world_size
from clinfonce_plugin.methods.training_split import given_sample_info

METHOD_KWARGS = {
    **PROJECTOR_KWARGS,
    "temperature": 0.1,
    "num_negatives": 16384,
    "clusters": {"provider": "kmeans"},
}


def negatives_seed(seed: int, step: int, granularity: int) -> int:
    """Seed of the negative-prototype draw of one step and granularity: a function of the
    run's seed and the global step only, so every rank (and a resumed run) draws the same."""
    return int(np.random.SeedSequence([seed, step, granularity]).generate_state(1)[0])


class PCL(DynamicClusters, ProjectionHeads, BaseMethod):
    """Implements PCL (Li et al., ICLR 2021, Prototypical Contrastive Learning,
    https://arxiv.org/abs/2005.04966): ProtoNCE = instance InfoNCE + the mean over the M
    k-means granularities of the prototype term (``losses.proto_nce``).

    The clusters are the ``kmeans`` provider's, refreshed as for ``clinfonce`` (same
    embedding pass of the projector output, same faiss k-means, same checkpointed buffers):
    after its ``warmup_epochs`` (PCL: 20 epochs of InfoNCE alone) and then every ``period``
    epochs. After each refresh the concentration phi of every cluster of every granularity
    is estimated from the same embeddings (``clusters.concentration``: PCL's estimate with the
    official clipping to the 10th-90th percentiles, mean scaled to ``temperature``) and kept
    in the buffers ``concentration``, ``concentration_1``, ... (checkpointed with the
    provider's).

    A step: instance InfoNCE (``cl_infonce`` with one cluster per image, NT-Xent over the
    gathered batch at ``temperature``) on every view; once clustered, each view's embedding
    is also contrasted against the prototypes (the unit centroids) of its clusters, the
    softmax over the batch's clusters plus ``num_negatives`` others drawn at random (the same
    draw on every rank), each logit divided by its prototype's phi.

    Differences from the official code (salesforce/PCL): its instance term is MoCo's (a
    momentum key encoder and a queue of 16384 keys) and only the query view meets the
    prototypes; here the instance term is the in-batch InfoNCE the other methods of this
    plugin use and every view meets them. Its k-means is Euclidean on the momentum encoder's
    normalised features, phi measured to the un-normalised means; here the provider's
    spherical k-means of the network's own projector output, phi measured to the unit
    prototypes. Its softmax has one prototype column per image of the batch (a cluster with
    several images counts several times); here one per cluster.

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int): hidden units of the projector g.
            proj_output_dim (int): output dimension of g (PCL: 128).
            proj_num_layers (int): linear layers of g.
            temperature (float): tau of the instance term, and the mean of every
                granularity's phi (the official code: one --temperature for both).
            num_negatives (int): r, prototypes outside the batch's clusters in the softmax
                (the official code's --pcl-r 16384); all of them when there are fewer.
            clusters (dict): ``provider: kmeans`` and its parameters: ``k`` (one or a list,
                the granularities; PCL ImageNet: [25000, 50000, 100000]), ``warmup_epochs``,
                ``nredo`` (the official code: 5), ``period``, ... ``space`` must be
                ``projector`` (the prototypes live where the loss compares).
    """

    uses_sample_info = True  # the constructor accepts the training set's SampleInfo
    log_prefix = "pcl"

    def __init__(self, cfg: omegaconf.DictConfig, sample_info: Optional[SampleInfo] = None):
        super().__init__(cfg)
        kw = cfg.method_kwargs
        self.temperature: float = kw.temperature
        self.num_negatives: int = kw.num_negatives
        self.negatives_base_seed = int(cfg.seed)
        self.add_head("projector", "z", kw)
        self.provider = build_from_spec(
            OmegaConf.to_container(kw.clusters, resolve=True),
            given_sample_info("pcl", sample_info),
            embedding_dims={"projector": kw.proj_output_dim})
        for m in range(self.provider.num_granularities):
            k = self.provider.granularity_centroids(m).shape[0]
            self.register_buffer(granularity_buffer_name("concentration", m),
                                 torch.full((k,), float(self.temperature)))
        # identical on every rank (refreshed identically): DDP need not broadcast them
        self._ddp_params_and_buffers_to_ignore = [
            name for name, _ in self.named_buffers()
            if name.startswith(("provider.", "concentration"))]
        self.init_dynamic_clusters()

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = super(PCL, PCL).add_and_assert_specific_cfg(cfg)
        with open_dict(cfg):
            kw = fill_defaults(cfg, "method_kwargs", METHOD_KWARGS)
            if kw.temperature <= 0:
                raise ConfigError(f"method_kwargs.temperature must be > 0, got {kw.temperature}")
            r = kw.num_negatives
            if not isinstance(r, int) or isinstance(r, bool) or r < 0:
                raise ConfigError(f"method_kwargs.num_negatives must be an integer >= 0, "
                                  f"got {r!r}")
            if kw.clusters.get("provider") != "kmeans":
                raise ConfigError(f"pcl clusters with k-means: method_kwargs.clusters.provider "
                                  f"must be 'kmeans', got {kw.clusters.get('provider')!r}")
            if kw.clusters.get("space", KMeansProvider.PARAMS["space"]) != "projector":
                raise ConfigError("pcl compares the projector output with the prototypes: "
                                  "method_kwargs.clusters.space must be 'projector', got "
                                  f"{kw.clusters.get('space')!r}")
        return cfg

    # ------------------------------------------------------------ dynamic clusters
    def cluster_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)["z"]

    def concentration_of(self, granularity: int) -> torch.Tensor:
        """(k,) buffer of granularity's phi (entries past its number of clusters unused)."""
        return getattr(self, granularity_buffer_name("concentration", granularity))

    def clusters_refreshed(self, embeddings: torch.Tensor, epoch: int) -> Dict[str, float]:
        x = embeddings.detach().cpu().numpy()
        metrics = {}
        for m in range(self.provider.num_granularities):
            k = self.provider.granularity_num_clusters(m)
            phi = concentration(x, self.provider.granularity_ids(m).cpu().numpy(),
                                self.provider.granularity_centroids(m)[:k].cpu().numpy(),
                                self.temperature)
            buf = self.concentration_of(m)
            buf.fill_(float(self.temperature))  # past K: never read
            buf[:k] = torch.from_numpy(phi).to(buf.device)
            suffix = "" if m == 0 else f"_{m}"
            metrics[f"pcl_concentration_min{suffix}"] = float(phi.min())
            metrics[f"pcl_concentration_max{suffix}"] = float(phi.max())
        return metrics

    # ----------------------------------------------------------------------- step
    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes = batch[0]
        out = super().training_step(batch, batch_idx)
        n_views = len(out["z"])
        z = torch.cat(out["z"])
        b = indexes.size(0)
        # instance ids made contiguous across ranks: rank r owns r*B .. r*B+B-1
        inst = (torch.arange(b, device=indexes.device) + get_rank() * b).repeat(n_views)
        instance = cl_infonce(z, inst, self.temperature, num_clusters=b * get_world_size())
        logs = {"train_instance_loss": instance}
        total = instance
        if self.provider.refreshed:  # PCL's warm-up: the instance term alone until then
            granularities = self.provider.num_granularities
            proto = z.new_zeros(())
            for m in range(granularities):
                k = self.provider.granularity_num_clusters(m)
                ids = (self.provider(indexes) if m == 0
                       else self.provider.granularity_ids(m)[indexes]).repeat(n_views)
                generator = torch.Generator().manual_seed(
                    negatives_seed(self.negatives_base_seed, int(self.global_step), m))
                proto = proto + proto_nce(z, ids, self.provider.granularity_centroids(m)[:k],
                                          self.concentration_of(m)[:k], self.num_negatives,
                                          generator)
            proto = proto / granularities
            logs["train_proto_loss"] = proto
            total = total + proto
        logs["num_clusters"] = float(self.provider.num_clusters)
        self.log_dict(logs, on_epoch=True, sync_dist=True)
        return total + out["loss"]
