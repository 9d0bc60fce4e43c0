"""bench/wider_read.py --quick: runs from the repository and reports the sizes it wrote."""
from tests.helpers import load_bench


def test_wider_read_quick_reports_sizes_and_times(capsys):
    result = load_bench("wider_read").main(["--quick", "--repeats", "1"])
    assert result["images"] == 60 and result["persons"] == 120
    assert result["json_loads_s"] > 0 and result["read_wider_s"] > 0
    assert "60 images, 120 persons" in capsys.readouterr().out
