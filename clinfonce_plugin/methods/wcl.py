"""WCL as a host method: instance head g, weak-label head phi, their losses, KNN multi-crop."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import omegaconf
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import open_dict
from torch.utils.data import Dataset

from clinfonce_plugin.config import ConfigError, fill_defaults
from clinfonce_plugin.clusters.components import BACKENDS as WEAK_LABEL_BACKENDS
from clinfonce_plugin.clusters.components import mean_view_statistics, weak_labels_of_views
from clinfonce_plugin.clusters.neighbours import BACKENDS as KNN_BACKENDS
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.indexed import IndexedDataset
from clinfonce_plugin.data.knn_multicrop import KnnMultiCrop
from clinfonce_plugin.methods.heads import PROJECTOR_KWARGS, ProjectionHeads
from clinfonce_plugin.host import BaseMethod
from clinfonce_plugin.losses import instance_nce, multicrop_nce, multicrop_swap, wcl_swap
from clinfonce_plugin.utils.distributed import all_gather_no_grad, gather_with_grad
from clinfonce_plugin.methods.training_split import given_sample_info

# WCL Table 2 rows (the multi-crop terms join whenever small crops are configured)
ABLATIONS = {
    "instance": "head g with L_NCE only (= SimCLR)",
    "weak_only": "head phi with the weak-label loss only",
    "one_head": "L_NCE and the weak-label loss on the same head g",
    "two_heads": "WCL: L_NCE on g, the weak-label loss on phi",
}

METHOD_KWARGS = {
    **PROJECTOR_KWARGS,
    "proj_batch_norm": True,
    "temperature": 0.1,
    "ablation": "two_heads",
    "swap": True,
    "cnce_weight": 1.0,
    "swap_weight": 0.5,
    "cswap_weight": 0.5,
    "weak_label_backend": "torch",
    "knn_multicrop": True,
    "knn_k": 5,
    "knn_warmup_epochs": 10,
    "knn_backend": "faiss",
    "knn_seed": 0,
}


def target_coverage(sample_info: Optional[SampleInfo]) -> str:
    """"all", "some" or "none" of the training set's labels known (-1: unknown); "some"
    (decided batch by batch) when the split or its labels are not given."""
    labels = None if sample_info is None else sample_info.labels
    if labels is None or len(labels) == 0:
        return "some"
    known = np.asarray(labels) != -1
    return "all" if known.all() else ("some" if known.any() else "none")


class WCL(ProjectionHeads, BaseMethod):
    """Implements WCL, Weakly Supervised Contrastive Learning (https://arxiv.org/abs/2110.04770).

    Two projection heads of the same structure on the backbone: g does instance
    discrimination (L_NCE over the two large views); phi gets weak labels -- the connected
    components of the batch 1-NN graph of phi's embeddings, one graph per large view, under
    no_grad -- and is trained with the swapped loss ``L_swap = L_sup(V1, y2) + L_sup(V2, y1)``.
    Small crops add L_cNCE (g) and L_cswap (phi); the formulas of all four terms are in
    ``losses.wcl``::

        L = L_NCE + cnce_weight * L_cNCE + swap_weight * L_swap + cswap_weight * L_cswap

    (lambda = 1, beta = 0.5, gamma = 0.5 by default; beta = 0.5 on the two-term L_swap is the
    official code's average of the two directions.) Each large view is gathered over ranks
    once per step and serves its weak labels and every loss term.

    KNN multi-crop (``data.knn_multicrop.KnnMultiCrop``, the ``knn`` submodule; its table is
    checkpointed): after ``knn_warmup_epochs`` the small crops of image i are cut from its
    nearest neighbours in backbone feature space.

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int): hidden units of g and phi (paper: 2048).
            proj_output_dim (int): output dimension of g and phi (paper: 128).
            proj_num_layers (int): linear layers per head (paper: 2).
            proj_batch_norm (bool): BatchNorm after each hidden linear layer (official code).
            temperature (float): tau of every term (paper: 0.1).
            ablation (str): "two_heads" (WCL), "instance" (= SimCLR), "weak_only",
                "one_head" -- the rows of WCL Table 2; see ``ABLATIONS``.
            swap (bool): weak labels from the other view (L_swap, default) or from the
                same view (L_sup(V1, y1) + L_sup(V2, y2)).
            cnce_weight (float): lambda, weight of L_cNCE.
            swap_weight (float): beta, weight of L_swap.
            cswap_weight (float): gamma, weight of L_cswap.
            weak_label_backend (str): "torch" (on device) or "scipy".
            knn_multicrop (bool): small crops from neighbours (needs small crops in
                ``augmentations``); false = standard multi-crop.
            knn_k (int): neighbours per image.
            knn_warmup_epochs (int): epochs of standard multi-crop before KNN multi-crop
                (at least 1: the first table needs one epoch of features).
            knn_backend (str): "faiss" (GPU index when available) or "torch".
            knn_seed (int): seed of the neighbour choice (with the epoch and the index).
    """

    uses_sample_info = True  # the constructor accepts the training set's SampleInfo

    def __init__(self, cfg: omegaconf.DictConfig, sample_info: Optional[SampleInfo] = None):
        super().__init__(cfg)
        kw = cfg.method_kwargs
        self.temperature: float = float(kw.temperature)
        self.ablation: str = kw.ablation
        self.swap: bool = bool(kw.swap)
        self.cnce_weight: float = float(kw.cnce_weight)
        self.swap_weight: float = float(kw.swap_weight)
        self.cswap_weight: float = float(kw.cswap_weight)
        self.weak_label_backend: str = kw.weak_label_backend
        # whether the training targets are all known, some, or none: the step then logs the
        # weak labels' purity without reading anything back to the host, only after a
        # check of the batch, or not at all
        self.targets_known = target_coverage(sample_info)
        self.has_instance = self.ablation != "weak_only"
        self.has_weak = self.ablation != "instance"

        # g: the instance head; under "weak_only" the single head is phi, under "one_head"
        # both losses use g
        if self.has_instance:
            self.add_head("projector", "z", kw, batch_norm=kw.proj_batch_norm)
        if self.ablation in ("two_heads", "weak_only"):
            self.add_head("weak_projector", "v", kw, batch_norm=kw.proj_batch_norm)
        self.weak_key = "v" if self.ablation in ("two_heads", "weak_only") else "z"

        self.knn: Optional[KnnMultiCrop] = None
        if kw.knn_multicrop and self.num_small_crops > 0:
            self.knn = KnnMultiCrop(given_sample_info("wcl", sample_info).num_samples,
                                    int(kw.knn_k), int(kw.knn_warmup_epochs), kw.knn_backend,
                                    int(kw.knn_seed))
            # identical on every rank by construction: DDP need not broadcast them each step
            self._ddp_params_and_buffers_to_ignore = [
                f"knn.{name}" for name, _ in self.knn.named_buffers()]
            self.register_load_state_dict_pre_hook(self.knn.legacy_keys_hook)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = super(WCL, WCL).add_and_assert_specific_cfg(cfg)
        with open_dict(cfg):
            kw = fill_defaults(cfg, "method_kwargs", METHOD_KWARGS)
            if kw.temperature <= 0:
                raise ConfigError(f"method_kwargs.temperature must be > 0, got {kw.temperature}")
            for key, choices in (("ablation", ABLATIONS), ("knn_backend", KNN_BACKENDS),
                                 ("weak_label_backend", WEAK_LABEL_BACKENDS)):
                if kw[key] not in choices:
                    raise ConfigError(f"unknown method_kwargs.{key} {kw[key]!r}. "
                                      f"Choose from {sorted(choices)}")
            for key, low in (("cnce_weight", 0), ("swap_weight", 0), ("cswap_weight", 0),
                             ("knn_k", 1), ("knn_warmup_epochs", 0)):
                if kw[key] < low:
                    raise ConfigError(f"method_kwargs.{key} must be >= {low}, got {kw[key]}")
            large = cfg.data.get("num_large_crops")
            if large is not None and large != 2:
                raise ConfigError(f"wcl needs exactly 2 large crops (the two views of L_NCE "
                                  f"and L_swap), got {large}")
        return cfg

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes, _, targets = batch
        out = super().training_step(batch, batch_idx)
        terms: Dict[str, Tuple[float, torch.Tensor]] = {}  # name -> (weight, loss)
        logs: Dict[str, Any] = {}
        # each head's two large views, gathered over ranks once for all its terms (a list,
        # not a set: every rank must run the collectives in the same order)
        heads = [h for h in ("z", "v") if h in out]
        gathered = {h: [gather_with_grad(x) for x in out[h][:2]] for h in heads}

        if self.has_instance:
            z, keys = out["z"], gathered["z"]
            terms["nce"] = (1.0, instance_nce(z[0], z[1], self.temperature, keys=keys))
            if self.num_small_crops:
                terms["cnce"] = (self.cnce_weight, multicrop_nce(
                    torch.cat(z[2:]), z[:2], self.temperature, keys=keys))
        if self.has_weak:
            v, keys = out[self.weak_key], gathered[self.weak_key]
            y1, y2 = self._weak_labels(v[:2], keys, logs, targets)
            # wcl_swap(v1, v2, a, b) = L_sup(V1, b) + L_sup(V2, a)
            sup = (y1, y2) if self.swap else (y2, y1)
            # canonical labels lie in 0..C-1, C <= N: N bounds them without reading C back
            counts = tuple(y.numel() for y in sup)
            terms["swap"] = (self.swap_weight, wcl_swap(v[0], v[1], *sup, self.temperature,
                                                        num_clusters=counts, keys=keys))
            if self.num_small_crops:
                terms["cswap"] = (self.cswap_weight, multicrop_swap(
                    torch.cat(v[2:]), v[:2], (y1, y2), self.temperature, keys=keys))

        if self.knn is not None:
            self.knn.observe(out["feats"][0], indexes, self.current_epoch)
        total = out["loss"]  # the online probe's loss
        for name, (weight, loss) in terms.items():
            logs[f"train_{name}_loss"] = loss
            total = total + weight * loss
        self.log_dict(logs, on_epoch=True, sync_dist=True)
        return total

    @torch.no_grad()
    def _weak_labels(self, views: Sequence[torch.Tensor], keys: Sequence[torch.Tensor],
                     logs: Dict[str, Any], targets: torch.Tensor) -> List[torch.Tensor]:
        """(N,) weak labels of each view: (B, D) local rows, (N, D) gathered ``keys``; each
        view its own 1-NN graph. Their statistics go to ``logs``."""
        rows = [F.normalize(v.detach().float(), dim=1) for v in views]
        # one process: the gathered keys are the views themselves, normalised once
        y = weak_labels_of_views(rows, [r if k is v else F.normalize(k.detach().float(), dim=1)
                                        for r, k, v in zip(rows, keys, views)],
                                 backend=self.weak_label_backend)
        t = all_gather_no_grad(targets) if self.targets_known != "none" else None
        if self.targets_known == "some" and not bool((t != -1).any()):
            t = None  # no known target in this batch: no purity (one host read per step)
        # the mean over the two views of each labelling's statistics
        stats = mean_view_statistics(y, t)
        logs.update(weak_num_components=stats["num_components"],
                    weak_mean_component_size=stats["mean_size"])
        if t is not None:
            logs["weak_purity"] = stats["purity"]
        return y

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.knn is not None:
            self.knn.epoch_start(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.knn is not None:  # logs the new table's statistics
            self.log_dict(self.knn.epoch_end(self.current_epoch), on_epoch=True, sync_dist=True)

    def make_train_dataset(self, base: Dataset, transform, crops=None) -> Dataset:
        """The training set the runner loads: KNN multi-crop when enabled (the shared
        neighbour table is created here, before the dataloader workers exist), else index
        wrapping with the host's crop pipeline ``transform``. ``crops`` = (large, small)
        per-crop transforms (the runner passes those of its augmentation schedule); default:
        built from ``cfg.augmentations``."""
        if self.knn is None:
            return IndexedDataset(base, transform)
        if crops is None:
            from clinfonce_plugin.data.transforms import crop_pipelines

            crops = crop_pipelines(self.cfg)
        large, small = crops
        return self.knn.make_dataset(base, large, small)
