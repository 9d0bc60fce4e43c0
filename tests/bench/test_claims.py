"""bench/claims.py: rows merged per data instance, claims compared with hand-computed values."""
import json

import pytest

from tests.helpers import load_bench


def _write(path, data_seed, seeds, rows):
    path.write_text(json.dumps({"data": {"seed": data_seed}, "seeds": seeds,
                                "runs": {name: [{"top1": v} for v in values]
                                         for name, values in rows.items()}}))
    return str(path)


def test_compare_hand_computed():
    claims = load_bench("claims")
    c = claims.compare({0: 60.0, 1: 62.0, 2: 64.0}, {0: 59.0, 1: 63.0, 2: 58.0})
    assert c["ahead"] == pytest.approx(62.0) and c["behind"] == pytest.approx(60.0)
    assert c["gap"] == pytest.approx(2.0)
    # sample stds: 2.0 and sqrt(((−1)^2 + 3^2 + (−2)^2) / 2) = sqrt(7)
    assert c["spread"] == pytest.approx(7 ** 0.5)
    assert c["exceeds"] is False
    assert (c["wins"], c["shared"]) == (2, 3)  # seeds 0 and 2
    c = claims.compare({0: 70.0, 1: 71.0}, {0: 60.0, 1: 61.0})
    assert c["exceeds"] is True and c["gap"] == pytest.approx(10.0)


def test_rows_merge_per_instance_and_the_later_file_wins(tmp_path):
    claims = load_bench("claims")
    a = _write(tmp_path / "a.json", 0, [0, 1], {"simclr": [50.0, 52.0],
                                                "clinfonce (kmeans)": [40.0, 42.0]})
    b = _write(tmp_path / "b.json", 0, [0, 1], {"clinfonce (kmeans)": [55.0, 53.0]})
    c = _write(tmp_path / "c.json", 1, [3, 4], {"simclr": [49.0, 50.0]})
    merged = claims.load([a, b, c])
    assert merged == {0: {"simclr": {0: 50.0, 1: 52.0}, "clinfonce (kmeans)": {0: 55.0, 1: 53.0}},
                      1: {"simclr": {3: 49.0, 4: 50.0}}}
    text = claims.report(merged)
    # instance 0: 54.0 vs 51.0, gap +3.0, spread max(sqrt(2), sqrt(2)) = 1.4, ahead on 2 of 2
    assert "| K-means + Cl-InfoNCE > SimCLR (Fig. 5) | 0 | 54.0 | 51.0 | +3.0 | 1.4 | yes | 2/2 |" \
        in text.splitlines()
    # instance 1 has no k-means row: no claim line for it, but its table
    assert not any(line.startswith("| K-means + Cl-InfoNCE > SimCLR (Fig. 5) | 1 |")
                   for line in text.splitlines())
    assert "| simclr | 49.5 ± 0.7 | 49.0 / 50.0 |" in text.splitlines()
