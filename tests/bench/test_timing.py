"""bench/_timing.alternate on a fake clock: ratios, medians and the rotated order are exact."""
import pytest

from tests.helpers import load_bench


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.calls = []

    def perf_counter(self):
        return self.now

    def work(self, name, seconds):
        def fn():
            self.calls.append(name)
            self.now += seconds(len(self.calls))
        return fn


def test_alternate_medians_of_per_round_ratios_and_rotation(monkeypatch):
    timing = load_bench("_timing")
    clock = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    # round r (0-based) costs: base 1, 2, 4 (drifting load), cand always twice the base of
    # its round, other 3.0 fixed
    base_cost = [1.0, 2.0, 4.0]
    round_of = lambda: (len(clock.calls) - 1) // 3  # noqa: E731
    fns = {"base": clock.work("base", lambda _: base_cost[round_of()]),
           "cand": clock.work("cand", lambda _: 2 * base_cost[round_of()]),
           "other": clock.work("other", lambda _: 3.0)}
    res = timing.alternate(fns, 3, "base")
    assert clock.calls == ["base", "cand", "other", "cand", "other", "base",
                           "other", "base", "cand"]
    assert res["base"]["median_ratio"] == 1.0
    assert res["cand"]["median_ratio"] == pytest.approx(2.0)  # although its seconds drift
    assert res["cand"]["median_s"] == pytest.approx(4.0)
    assert res["other"]["median_ratio"] == pytest.approx(1.5)  # ratios 3, 1.5, 0.75
    assert res["base"]["per_round_s"] == pytest.approx([1.0, 2.0, 4.0])


def test_alternate_rejects_bad_arguments():
    timing = load_bench("_timing")
    with pytest.raises(ValueError, match="baseline 'x'"):
        timing.alternate({"a": lambda: None}, 1, "x")
    with pytest.raises(ValueError, match="rounds"):
        timing.alternate({"a": lambda: None}, 0, "a")
