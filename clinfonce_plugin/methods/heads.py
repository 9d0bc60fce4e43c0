"""Network heads the plugin's methods put on the host's backbone, and the one set-up of a
method's projection heads (``ProjectionHeads``)."""
from typing import Any, Dict, List

import torch
import torch.nn as nn

# the projector keys of every method with one (each method's METHOD_KWARGS starts with them)
PROJECTOR_KWARGS = {
    "proj_hidden_dim": 2048,
    "proj_output_dim": 128,
    "proj_num_layers": 2,
}


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
        batch_norm: bool = False) -> nn.Sequential:
    """Projection head: ``num_layers`` linear layers, ReLU (and BN) between them."""
    if num_layers < 1:
        raise ValueError(f"projector needs at least one layer, got num_layers={num_layers}")
    layers = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class ProjectionHeads:
    """Mixin of a host ``BaseMethod`` (listed before it) with projection heads on the backbone
    features.

    ``add_head(name, key, kw)`` builds the MLP ``feats -> proj_hidden_dim -> ...
    -> proj_output_dim`` of ``kw``'s ``proj_*`` keys as the submodule ``name``; then
    ``forward`` and ``multicrop_forward`` add ``out[key] = head(out["feats"])`` for every head
    and ``learnable_params`` adds one group ``{"name": name}`` per head, in the order the
    heads were added.
    """

    def add_head(self, name: str, key: str, kw: Any, batch_norm: bool = False) -> nn.Module:
        head = mlp(self.features_dim, kw.proj_hidden_dim, kw.proj_output_dim,
                   kw.proj_num_layers, batch_norm=batch_norm)
        setattr(self, name, head)
        # (module name, output key) of each head, in order; a plain list, not a submodule
        self.__dict__.setdefault("_heads", []).append((name, key))
        return head

    @property
    def heads(self) -> List[tuple]:
        return self.__dict__.get("_heads", [])

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        return super().learnable_params + [
            {"name": name, "params": getattr(self, name).parameters()} for name, _ in self.heads]

    def _project(self, out: Dict[str, Any]) -> Dict[str, Any]:
        for name, key in self.heads:
            out.update({key: getattr(self, name)(out["feats"])})
        return out

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return self._project(super().forward(X))

    def multicrop_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return self._project(super().multicrop_forward(X))
