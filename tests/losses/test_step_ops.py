"""Operators the training step's losses dispatch (the launches a GPU step pays for): values
are pinned elsewhere; these pin what is computed once."""
import torch

from clinfonce_plugin.losses import cl_infonce, instance_nce, wcl_swap
from tests.helpers import DispatchedOps as Ops


def test_gathered_rows_are_normalised_once():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 4, generator=g, requires_grad=True)
    ids = torch.tensor([0, 1, 2, 3] * 2)
    with Ops() as ops:
        cl_infonce(z, ids, 0.5, num_clusters=4, gathered=(z, ids)).backward()
    assert ops.names.count("linalg_vector_norm") == 1
    v1, v2 = z[:4].detach().requires_grad_(), z[4:].detach().requires_grad_()
    y = torch.tensor([0, 0, 1, 1])
    with Ops() as ops:
        instance_nce(v1, v2, 0.5, keys=(v1, v2))
    assert ops.names.count("linalg_vector_norm") == 1


def test_both_swap_directions_share_one_pass():
    # L_sup(V1, y2) + L_sup(V2, y1): one normalisation, one similarity GEMM, one exp, one
    # centroid scatter for the two directions (values: tests/losses/test_wcl_swap.py)
    g = torch.Generator().manual_seed(0)
    v1, v2 = (torch.randn(4, 3, generator=g, requires_grad=True) for _ in range(2))
    y = torch.tensor([0, 0, 1, 1])
    for keys in ((v1, v2), None):
        with Ops() as ops:
            wcl_swap(v1, v2, y, y, 0.5, num_clusters=(2, 2), keys=keys)
        for name in ("linalg_vector_norm", "baddbmm", "exp_", "index_select"):
            assert ops.names.count(name) == 1, (name, keys is None)


def test_anchor_values_come_from_the_gathered_rows():
    # z serves the shape checks: its values are those of gathered's block by contract
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 4, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 1, 2, 3] * 2)
    expected = cl_infonce(z, ids, 0.5)
    assert torch.allclose(cl_infonce(torch.zeros_like(z), ids, 0.5, gathered=(z, ids)),
                          expected, rtol=0, atol=1e-12)
