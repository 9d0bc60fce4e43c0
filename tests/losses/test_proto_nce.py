"""proto_nce (ProtoNCE's prototype term) against a slow loop reference, closed forms, the
negative-prototype draw, gradients and input checks."""
import math

import pytest
import torch

from clinfonce_plugin.losses import proto_nce, prototype_columns


def reference(z, ids, prototypes, phi, columns):
    """One anchor at a time, one column at a time, in float64: -log softmax of the own
    prototype over the columns, each logit z.c / phi of that prototype."""
    total = 0.0
    for a in range(z.shape[0]):
        za = [float(v) for v in z[a].double()]
        norm_a = math.sqrt(sum(v * v for v in za))
        terms = {}
        for j in columns:
            cj = [float(v) for v in prototypes[j].double()]
            norm_j = math.sqrt(sum(v * v for v in cj))
            dot = sum(p * q for p, q in zip(za, cj)) / (norm_a * norm_j)
            terms[j] = dot / float(phi[j])
        own = terms[int(ids[a])]
        total += -own + math.log(sum(math.exp(t) for t in terms.values()))
    return total / z.shape[0]


def _case(seed, rows=10, k=7, d=5):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, d, generator=g, dtype=torch.float64)
    ids = torch.randint(0, k, (rows,), generator=g)
    prototypes = torch.randn(k, d, generator=g, dtype=torch.float64)
    phi = 0.05 + 0.3 * torch.rand(k, generator=g, dtype=torch.float64)
    return z, ids, prototypes, phi


@pytest.mark.parametrize("seed, rows, k, d", [(0, 10, 7, 5), (1, 6, 3, 2), (2, 16, 40, 8),
                                              (3, 1, 4, 3)])
def test_all_prototypes_equal_the_loop_reference(seed, rows, k, d):
    z, ids, prototypes, phi = _case(seed, rows, k, d)
    got = proto_nce(z, ids, prototypes, phi)
    assert got.item() == pytest.approx(reference(z, ids, prototypes, phi, range(k)), abs=1e-10)


@pytest.mark.parametrize("seed, r", [(4, 0), (5, 3), (6, 10), (7, 100)])
def test_sampled_prototypes_equal_the_loop_reference_over_the_drawn_columns(seed, r):
    z, ids, prototypes, phi = _case(seed, rows=8, k=30)
    columns = prototype_columns(ids, 30, r, torch.Generator().manual_seed(9))
    got = proto_nce(z, ids, prototypes, phi, num_negatives=r,
                    generator=torch.Generator().manual_seed(9))
    chosen = columns.nonzero().squeeze(1).tolist()
    assert got.item() == pytest.approx(reference(z, ids, prototypes, phi, chosen), abs=1e-10)


def test_uniform_similarities_give_log_of_the_number_of_columns():
    # every row orthogonal to every prototype and phi constant: all logits 0
    z = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    prototypes = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0],
                               [0.0, -1.0, 1.0], [0.0, 3.0, -1.0]])
    phi = torch.full((5,), 0.3)
    ids = torch.tensor([0, 2])
    assert proto_nce(z, ids, prototypes, phi).item() == pytest.approx(math.log(5), abs=1e-6)
    # r = 1: the batch's clusters {0, 2} plus one drawn prototype
    loss = proto_nce(z, ids, prototypes, phi, num_negatives=1,
                     generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(math.log(3), abs=1e-6)


def test_one_column_per_cluster_with_constant_phi_is_a_prototype_softmax():
    # phi = tau everywhere: cross-entropy of z.c / tau over the prototypes
    z, ids, prototypes, _ = _case(8)
    phi = torch.full((7,), 0.2, dtype=torch.float64)
    zn = torch.nn.functional.normalize(z, dim=1)
    cn = torch.nn.functional.normalize(prototypes, dim=1)
    expected = torch.nn.functional.cross_entropy(zn @ cn.T / 0.2, ids)
    assert proto_nce(z, ids, prototypes, phi).item() == pytest.approx(expected.item(), abs=1e-12)


def test_the_draw_keeps_every_batch_cluster_and_draws_r_others_uniformly():
    batch = torch.tensor([3, 3, 0, 7])
    k, r = 12, 4
    counts = torch.zeros(k)
    g = torch.Generator().manual_seed(1)
    draws = 3000
    for _ in range(draws):
        columns = prototype_columns(batch, k, r, g)
        assert columns[[0, 3, 7]].all()
        assert int(columns.sum()) == 3 + r
        counts += columns.float()
    others = [c for c in range(k) if c not in (0, 3, 7)]
    # each of the 9 other clusters is drawn with probability r / 9
    freq = counts[others] / draws
    assert torch.allclose(freq, torch.full_like(freq, r / 9), atol=0.04), freq
    # fewer others than r: all of them; None: every prototype
    assert prototype_columns(batch, 8, 10).tolist() == [True] * 8
    assert prototype_columns(batch, 9, None).all()
    # the draw is the generator's: equal states, equal columns
    a = prototype_columns(batch, 50, 5, torch.Generator().manual_seed(3))
    b = prototype_columns(batch, 50, 5, torch.Generator().manual_seed(3))
    c = prototype_columns(batch, 50, 5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gradcheck_in_float64():
    z, ids, prototypes, phi = _case(9, rows=5, k=6, d=4)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: proto_nce(x, ids, prototypes, phi), (z,))


def test_float32_matches_float64():
    z, ids, prototypes, phi = _case(10, rows=12, k=9)
    hi = proto_nce(z, ids, prototypes, phi)
    lo = proto_nce(z.float(), ids, prototypes.float(), phi.float())
    assert lo.dtype == torch.float32
    assert lo.item() == pytest.approx(hi.item(), abs=1e-5)


def test_the_gradient_pulls_rows_to_their_prototype():
    z, ids, prototypes, phi = _case(11)
    z.requires_grad_(True)
    proto_nce(z, ids, prototypes, phi).backward()
    stepped = (z - 0.01 * z.grad).detach()
    cn = torch.nn.functional.normalize(prototypes, dim=1)
    before = (torch.nn.functional.normalize(z.detach(), dim=1) * cn[ids]).sum(1)
    after = (torch.nn.functional.normalize(stepped, dim=1) * cn[ids]).sum(1)
    assert after.mean() > before.mean()


@pytest.mark.parametrize("kwargs, match", [
    (dict(z=torch.ones(3)), r"z must be a 2-D tensor"),
    (dict(ids=torch.tensor([0, 1])), r"ids must be a 1-D tensor with one cluster id per row"),
    (dict(ids=torch.tensor([0.0, 1.0, 2.0])), r"ids must be an integer tensor"),
    (dict(ids=torch.tensor([0, 1, 4])), r"ids must lie in \[0, K=4\), got range \[0, 4\]"),
    (dict(prototypes=torch.ones(4, 3)), r"prototypes must be a \(K, 2\) tensor"),
    (dict(concentration=torch.ones(3)), r"concentration must be a \(4,\) tensor"),
    (dict(concentration=torch.tensor([1.0, 0.0, 1.0, 1.0])), r"finite and > 0"),
    (dict(num_negatives=-1), r"num_negatives must be None or an int >= 0, got -1"),
])
def test_bad_inputs_are_rejected(kwargs, match):
    args = dict(z=torch.ones(3, 2), ids=torch.tensor([0, 1, 2]), prototypes=torch.ones(4, 2),
                concentration=torch.ones(4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        proto_nce(**args)
