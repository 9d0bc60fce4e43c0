"""Alternating timing shared by the bench scripts.

These machines are noisy (+-15-20 % run to run), so every figure is a ratio measured in
one process: the candidates run in turn (the order rotated every round, so none always
follows the same neighbour) and the reported ratio is the median of the per-round ratios.
"""
import statistics
import time
from typing import Callable, Dict, Mapping


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(fns: Mapping[str, Callable[[], object]], rounds: int, baseline: str
              ) -> Dict[str, Dict[str, float]]:
    """Times every function once per round, in rotated order.

    Returns, per name, ``median_s`` (median seconds of one call), ``median_ratio``
    (median over rounds of its time / the baseline's time in the same round; 1.0 for the
    baseline itself) and ``per_round_s`` (the seconds of every round, in round order).
    """
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of {sorted(fns)}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = list(fns)
    seconds: Dict[str, list] = {n: [] for n in names}
    ratios: Dict[str, list] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        this = {n: timed(fns[n]) for n in names[shift:] + names[:shift]}
        for n in names:
            seconds[n].append(this[n])
            ratios[n].append(this[n] / this[baseline])
    return {n: {"median_s": statistics.median(seconds[n]),
                "median_ratio": statistics.median(ratios[n]),
                "per_round_s": seconds[n]} for n in names}
