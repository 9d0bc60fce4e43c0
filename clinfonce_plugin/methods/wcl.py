"""WCL as a host method: instance head g, weak-label head phi, swapped weak-label loss, and
KNN multi-crop."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import omegaconf
import torch
import torch.nn.functional as F
from omegaconf import open_dict
from torch.utils.data import Dataset

from clinfonce_plugin.cfgcheck import ConfigError, fill_defaults
from clinfonce_plugin.clusters.components import BACKENDS as WEAK_LABEL_BACKENDS
from clinfonce_plugin.clusters.components import component_stats, purity, weak_labels_of_views
from clinfonce_plugin.clusters.neighbours import BACKENDS as KNN_BACKENDS
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.indexed import IndexedDataset
from clinfonce_plugin.data.knn_multicrop import (
    KnnMultiCropDataset,
    NeighbourTable,
    ensure_identical_across_ranks,
    gather_indexed,
    table_from_bank,
    write_bank,
)
from clinfonce_plugin.heads import mlp
from clinfonce_plugin.host import BaseMethod
from clinfonce_plugin.losses import cl_infonce, multicrop_nce, multicrop_swap, wcl_swap
from clinfonce_plugin.training_set import training_sample_info
from clinfonce_plugin.utils.distributed import all_gather_no_grad, get_rank, get_world_size

# WCL Table 2 rows (the multi-crop terms join whenever small crops are configured)
ABLATIONS = {
    "instance": "head g with L_NCE only (= SimCLR)",
    "weak_only": "head phi with the weak-label loss only",
    "one_head": "L_NCE and the weak-label loss on the same head g",
    "two_heads": "WCL: L_NCE on g, the weak-label loss on phi",
}

METHOD_KWARGS = {
    "proj_hidden_dim": 2048,
    "proj_output_dim": 128,
    "proj_num_layers": 2,
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


def _sync_after_load(module: "WCL", incompatible_keys: Any) -> None:
    module._sync_shared()


class WCL(BaseMethod):
    """Implements WCL, Weakly Supervised Contrastive Learning (https://arxiv.org/abs/2110.04770).

    Two projection heads of the same structure on the backbone: g does instance
    discrimination (L_NCE = NT-Xent over the two large views); phi gets weak labels -- the
    connected components of the batch 1-NN graph of phi's embeddings, computed separately
    for each large view under no_grad (y1 from view 1, y2 from view 2) -- and is trained with
    the swapped loss ``L_swap = L_sup(V1, y2) + L_sup(V2, y1)`` (``losses.wcl_swap``).
    Small crops add ``L_cNCE`` (g) and ``L_cswap`` (phi)::

        L = L_NCE + cnce_weight * L_cNCE + swap_weight * L_swap + cswap_weight * L_cswap

    The paper leaves the small-crop terms informal; here, with ``q_a`` the normalised
    embedding of small crop a, ``i(a)`` the image it is *assigned to* (its own image in the
    warm-up, the image whose neighbour it was cut from under KNN multi-crop), ``k^v_j`` the
    normalised view-v embedding of image j of the gathered batch (N images), ``y^v`` the weak
    labels of view v, and softmax over the N keys of one view (the crop is not a key)::

        L_cNCE  = 1/2 sum_{v=1,2} mean_a -log softmax_j(q_a . k^v_j / tau)[i(a)]       (g)
        L_cswap = sum_{v=1,2} mean_a -1/|P_v(a)| sum_{p in P_v(a)}
                                     log softmax_j(q_a . k^v_j / tau)[p]            (phi)
        P_v(a)  = {j : y^{3-v}_j = y^{3-v}_{i(a)}}   (always contains i(a))

    i.e. a small crop is one more anchor of view v in L_NCE (its positive: its image) and in
    ``L_sup(V_v, y^{3-v})`` of L_swap (its positives: its image's weak class, from the other
    view). ``mean_a`` runs over the local small crops; DDP's gradient averaging makes it the
    mean over all ranks' crops.

    (lambda = 1, beta = 0.5, gamma = 0.5 by default; beta = 0.5 on the two-term L_swap is the
    official code's average of the two directions.)

    KNN multi-crop: the backbone feature h of the first large crop of every image is kept
    in a bank (all ranks' batches, by dataset index); at the end of each epoch >=
    ``knn_warmup_epochs - 1`` every rank computes the same K-NN table from it (faiss inner
    product on normalised features); in the next epoch the small crops of image i are cut
    from neighbours of i (``data.knn_multicrop``). The table, its validity and the epoch it
    is meant for are buffers (``knn_neighbours``, ``knn_valid``, ``knn_epoch``): they are
    checkpointed and a resumed run samples from the same table.

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
        self.has_instance = self.ablation != "weak_only"
        self.has_weak = self.ablation != "instance"

        def head():
            return mlp(self.features_dim, kw.proj_hidden_dim, kw.proj_output_dim,
                       kw.proj_num_layers, batch_norm=kw.proj_batch_norm)

        # g: the instance head; under "weak_only" the single head is phi, under "one_head"
        # both losses use g
        if self.has_instance:
            self.projector = head()
        if self.ablation in ("two_heads", "weak_only"):
            self.weak_projector = head()
        self.weak_key = "v" if self.ablation in ("two_heads", "weak_only") else "z"

        self.knn_k: int = int(kw.knn_k)
        self.knn_warmup_epochs: int = int(kw.knn_warmup_epochs)
        self.knn_backend: str = kw.knn_backend
        self.knn_seed: int = int(kw.knn_seed)
        self.knn_enabled: bool = bool(kw.knn_multicrop) and self.num_small_crops > 0
        self._shared_table: Optional[NeighbourTable] = None
        self._bank: Optional[torch.Tensor] = None
        self._filled: Optional[torch.Tensor] = None
        if self.knn_enabled:
            info = training_sample_info(cfg, sample_info)
            self.knn_num_samples = int(info.num_samples)
            if self.knn_k >= self.knn_num_samples:
                raise ValueError(f"method_kwargs.knn_k={self.knn_k} must be smaller than the "
                                 f"{self.knn_num_samples} training images")
            self.register_buffer("knn_neighbours", torch.arange(self.knn_num_samples)
                                 .unsqueeze(1).repeat(1, self.knn_k))
            self.register_buffer("knn_valid", torch.zeros((), dtype=torch.bool))
            self.register_buffer("knn_epoch", torch.zeros((), dtype=torch.long))
            # identical on every rank by construction: DDP need not broadcast them each step
            self._ddp_params_and_buffers_to_ignore = ["knn_neighbours", "knn_valid",
                                                      "knn_epoch"]
            # a loaded state (resume, load_state_dict) reaches the dataloader workers
            self.register_load_state_dict_post_hook(_sync_after_load)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = super(WCL, WCL).add_and_assert_specific_cfg(cfg)
        with open_dict(cfg):
            kw = fill_defaults(cfg, "method_kwargs", METHOD_KWARGS)
            if kw.temperature <= 0:
                raise ConfigError(f"method_kwargs.temperature must be > 0, got {kw.temperature}")
            if kw.ablation not in ABLATIONS:
                raise ConfigError(f"unknown method_kwargs.ablation {kw.ablation!r}. "
                                  f"Choose from {sorted(ABLATIONS)}")
            for key in ("cnce_weight", "swap_weight", "cswap_weight"):
                if kw[key] < 0:
                    raise ConfigError(f"method_kwargs.{key} must be >= 0, got {kw[key]}")
            if kw.weak_label_backend not in WEAK_LABEL_BACKENDS:
                raise ConfigError(f"unknown method_kwargs.weak_label_backend "
                                  f"{kw.weak_label_backend!r}. "
                                  f"Choose from {sorted(WEAK_LABEL_BACKENDS)}")
            if kw.knn_backend not in KNN_BACKENDS:
                raise ConfigError(f"unknown method_kwargs.knn_backend {kw.knn_backend!r}. "
                                  f"Choose from {sorted(KNN_BACKENDS)}")
            if kw.knn_k < 1:
                raise ConfigError(f"method_kwargs.knn_k must be >= 1, got {kw.knn_k}")
            if kw.knn_warmup_epochs < 0:
                raise ConfigError(f"method_kwargs.knn_warmup_epochs must be >= 0, "
                                  f"got {kw.knn_warmup_epochs}")
            large = cfg.data.get("num_large_crops")
            if large is not None and large != 2:
                raise ConfigError(f"wcl needs exactly 2 large crops (the two views of L_NCE "
                                  f"and L_swap), got {large}")
        return cfg

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        extra = []
        if self.has_instance:
            extra.append({"name": "projector", "params": self.projector.parameters()})
        if hasattr(self, "weak_projector"):
            extra.append({"name": "weak_projector", "params": self.weak_projector.parameters()})
        return super().learnable_params + extra

    def _project(self, out: Dict[str, Any]) -> Dict[str, Any]:
        if self.has_instance:
            out.update({"z": self.projector(out["feats"])})
        if hasattr(self, "weak_projector"):
            out.update({"v": self.weak_projector(out["feats"])})
        return out

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return self._project(super().forward(X))

    def multicrop_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return self._project(super().multicrop_forward(X))

    # ------------------------------------------------------------------ losses

    @torch.no_grad()
    def _weak_labels(self, *views: torch.Tensor) -> List[torch.Tensor]:
        """(N,) weak labels of the gathered batch for each view's (B, D) local embeddings
        (each view its own 1-NN graph; labelled together in one call)."""
        rows = [F.normalize(v.detach().float(), dim=1) for v in views]
        return weak_labels_of_views(rows, backend=self.weak_label_backend)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes, _, targets = batch
        out = super().training_step(batch, batch_idx)
        b = indexes.size(0)
        rank, world = get_rank(), get_world_size()
        small = self.num_small_crops > 0
        logs: Dict[str, Any] = {}
        total = out["loss"]  # the online probe's loss

        if self.has_instance:
            z1, z2 = out["z"][0], out["z"][1]
            inst = (torch.arange(b, device=indexes.device) + rank * b).repeat(2)
            nce = cl_infonce(torch.cat([z1, z2]), inst, self.temperature, form="in",
                             num_clusters=b * world)
            logs["train_nce_loss"] = nce
            total = total + nce
            if small:
                cnce = multicrop_nce(torch.cat(out["z"][2:]), (z1, z2), self.temperature)
                logs["train_cnce_loss"] = cnce
                total = total + self.cnce_weight * cnce

        if self.has_weak:
            v1, v2 = out[self.weak_key][0], out[self.weak_key][1]
            y1, y2 = self._weak_labels(v1, v2)
            local = slice(rank * b, rank * b + b)  # this rank's rows of the gathered batch
            # canonical labels of the gathered batch: ids 0..C-1, C = max + 1
            c1, c2 = int(y1.max()) + 1, int(y2.max()) + 1
            if self.swap:
                weak = wcl_swap(v1, v2, y1[local], y2[local], self.temperature,
                                num_clusters=(c1, c2))
            else:
                weak = (cl_infonce(v1, y1[local], self.temperature, num_clusters=c1)
                        + cl_infonce(v2, y2[local], self.temperature, num_clusters=c2))
            logs["train_swap_loss"] = weak
            total = total + self.swap_weight * weak
            if small:
                cswap = multicrop_swap(torch.cat(out[self.weak_key][2:]), (v1, v2),
                                       (y1, y2), self.temperature)
                logs["train_cswap_loss"] = cswap
                total = total + self.cswap_weight * cswap
            logs.update(self._weak_label_stats(y1, y2, targets))

        if self._collecting():
            feats, idx = gather_indexed(out["feats"][0], indexes)
            self._write_bank(feats, idx)

        self.log_dict(logs, on_epoch=True, sync_dist=True)
        return total

    @torch.no_grad()
    def _weak_label_stats(self, y1: torch.Tensor, y2: torch.Tensor,
                          targets: torch.Tensor) -> Dict[str, float]:
        s1, s2 = component_stats(y1), component_stats(y2)
        stats = {
            "weak_num_components": (s1["num_components"] + s2["num_components"]) / 2,
            "weak_mean_component_size": (s1["mean_size"] + s2["mean_size"]) / 2,
        }
        t = all_gather_no_grad(targets)
        if bool((t != -1).any()):
            stats["weak_purity"] = (purity(y1, t) + purity(y2, t)) / 2
        return stats

    # ------------------------------------------------------- KNN multi-crop

    def _collecting(self) -> bool:
        """Features are stored in the epochs whose end computes a table that gets used."""
        return self.knn_enabled and self.current_epoch + 1 >= self.knn_warmup_epochs

    @torch.no_grad()
    def _write_bank(self, feats: torch.Tensor, indexes: torch.Tensor) -> None:
        if self._bank is None or self._bank.device != feats.device:
            # a plain tensor, not a buffer: it is large, not checkpointed, and DDP must not
            # broadcast it every step
            self._bank = feats.new_zeros(self.knn_num_samples, feats.shape[1], dtype=torch.float32)
            self._filled = torch.zeros(self.knn_num_samples, dtype=torch.bool, device=feats.device)
        write_bank(self._bank, self._filled, feats.float(), indexes)

    def _knn_active(self, epoch: int) -> bool:
        return bool(self.knn_valid) and epoch >= self.knn_warmup_epochs

    def _sync_shared(self) -> None:
        """Buffers -> the shared table read by the dataloader workers."""
        if self._shared_table is None:
            return
        epoch = int(self.knn_epoch)
        self._shared_table.update(self.knn_neighbours, self._knn_active(epoch), epoch)

    @torch.no_grad()
    def compute_knn_table(self) -> Optional[torch.Tensor]:
        """The K-NN table of the bank (identical on every rank), or None without a bank."""
        if self._bank is None:
            return None
        table = table_from_bank(self._bank, self._filled, self.knn_k, self.knn_backend)
        table, _ = ensure_identical_across_ranks(table)
        return table

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.knn_enabled and self._shared_table is not None:
            epoch = self.current_epoch
            self._shared_table.set_state(self._knn_active(epoch), epoch)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if not self.knn_enabled:
            return
        next_epoch = self.current_epoch + 1
        if next_epoch >= self.knn_warmup_epochs:
            table = self.compute_knn_table()
            if table is not None:
                self.knn_neighbours.copy_(table.to(self.knn_neighbours.device))
                self.knn_valid.fill_(True)
                self._log_table_stats()
        # set before the next epoch's iterator starts the workers' prefetching
        self.knn_epoch.fill_(next_epoch)
        self._sync_shared()

    @torch.no_grad()
    def _log_table_stats(self) -> None:
        filled = self._filled.float().mean()
        stats = {"knn_filled_fraction": filled}
        targets = getattr(self, "_train_targets", None)
        if targets is not None:
            t = targets.to(self.knn_neighbours.device)
            nb = t[self.knn_neighbours]
            known = (t[:, None] != -1) & (nb != -1) & self._filled[:, None].to(nb.device)
            if bool(known.any()):
                stats["knn_neighbour_purity"] = (nb == t[:, None])[known].float().mean()
        self.log_dict(stats, on_epoch=True, sync_dist=True)

    def make_train_dataset(self, base: Dataset, transform) -> Dataset:
        """The training set the runner loads: KNN multi-crop when enabled, else index
        wrapping with the host's crop pipeline ``transform``.

        The neighbour table is created here, in shared memory, before the dataloader
        workers exist.
        """
        if not self.knn_enabled:
            return IndexedDataset(base, transform)
        if len(base) != self.knn_num_samples:
            raise ValueError(f"the training set has {len(base)} images but the method was "
                             f"built for {self.knn_num_samples}")
        large, small = self._crop_transforms()
        self._shared_table = NeighbourTable(self.knn_num_samples, self.knn_k)
        self._sync_shared()
        targets = getattr(base, "targets", None)
        if targets is not None:
            self._train_targets = torch.as_tensor(list(targets), dtype=torch.long)
        return KnnMultiCropDataset(base, large, small, self._shared_table, seed=self.knn_seed)

    def _crop_transforms(self) -> Tuple[List[Any], List[Any]]:
        """Per-crop transforms of ``cfg.augmentations``: large (the first pipeline's crop
        size) then small, in the host's crop order."""
        from clinfonce_plugin import host

        augs = self.cfg.augmentations
        big = augs[0].crop_size
        large: List[Any] = []
        small: List[Any] = []
        for i, aug in enumerate(augs):
            transform = host.build_transform_pipeline(self.cfg.data.dataset, aug)
            if aug.crop_size == big:
                if small:
                    raise ValueError(f"augmentations[{i}] is a large-crop pipeline listed "
                                     f"after a small-crop one; list large crops first")
                large += [transform] * aug.num_crops
            else:
                small += [transform] * aug.num_crops
        return large, small
