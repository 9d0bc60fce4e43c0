"""bench/quality.py's bar chart: one bar per table row at the mean top-1 over seeds, an error
bar of one sample standard deviation, written as a PNG that replaces the previous chart."""
import statistics

import numpy as np
import pytest
from matplotlib.container import BarContainer

from tests.helpers import load_bench

# --quick-sized rows: one seed, and three seeds for two rows
ROWS = {
    "simclr": [{"top1": 40.0, "top5": 80.0}, {"top1": 44.0, "top5": 81.0},
               {"top1": 45.0, "top5": 82.0}],
    "clinfonce (attributes)": [{"top1": 50.0, "top5": 90.0}],
    "wcl": [{"top1": 30.0, "top5": 70.0}, {"top1": 36.0, "top5": 72.0},
            {"top1": 33.0, "top5": 71.0}],
}


def test_bars_are_the_rows_means_and_error_bars_their_std(tmp_path):
    quality = load_bench("quality")
    path = tmp_path / "quality.png"
    fig = quality.bar_chart(ROWS, str(path), "test")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([43.0, 50.0, 33.0])  # (40+44+45)/3, 50, (30+36+33)/3
    assert [t.get_text() for t in ax.get_xticklabels()] == list(ROWS)
    # each error bar spans mean - std .. mean + std (sample std; 0 for one seed)
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    segments = bars.errorbar.lines[2][0].get_segments()
    spans = [(seg[0][1], seg[1][1]) for seg in segments]
    stds = [statistics.stdev([40, 44, 45]), 0.0, statistics.stdev([30, 36, 33])]
    assert np.allclose(spans, [(m - s, m + s) for m, s in zip([43.0, 50.0, 33.0], stds)])
    assert [t.get_text() for t in ax.texts] == ["43.0", "50.0", "33.0"]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the chart is regenerated with its JSON: replaced, no copy kept aside
    quality.bar_chart({"simclr": ROWS["simclr"]}, str(path), "again")
    assert [p.name for p in tmp_path.iterdir()] == ["quality.png"]


def test_the_table_and_the_chart_use_the_same_mean_and_std():
    quality = load_bench("quality")
    assert quality.fmt([40.0, 44.0, 45.0]) == "43.0 ± {:.1f}".format(
        statistics.stdev([40, 44, 45]))
    assert quality.mean_std([50.0]) == (50.0, 0.0)
