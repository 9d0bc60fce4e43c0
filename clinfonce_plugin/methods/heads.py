"""Network heads the plugin's methods put on the host's backbone."""
import torch.nn as nn


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
