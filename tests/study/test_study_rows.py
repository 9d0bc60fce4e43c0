"""Reading ``rows.jsonl``: a last line cut by a kill (no newline at its end) is dropped; any
other line that is not a JSON object is one ``error:`` line naming file:line, exit 2, before
anything is trained or drawn."""
import json
import os

import pytest

from clinfonce_plugin.errors import DataError
from clinfonce_plugin.study.__main__ import main
from clinfonce_plugin.study.sweep import read_rows
from tests.helpers import exit_and_errors

ROW0 = {"run": "k=4/seed=0", "kind": "k", "value": 4, "seed": 0}
ROW1 = {"run": "k=8/seed=0", "kind": "k", "value": 8, "seed": 0}


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_a_last_line_cut_by_a_kill_is_dropped(tmp_path):
    path = str(tmp_path / "rows.jsonl")
    write(path, json.dumps(ROW0) + "\n\n" + json.dumps(ROW1) + "\n" + '{"run": "k=16/se')
    assert read_rows(path) == [ROW0, ROW1]
    # cut right before its newline: still not a finished row
    write(path, json.dumps(ROW0) + "\n" + json.dumps(ROW1))
    assert read_rows(path) == [ROW0]
    write(path, "")
    assert read_rows(path) == []
    assert read_rows(str(tmp_path / "absent.jsonl")) == []


@pytest.mark.parametrize("bad, found", [('{"run": "k=8/se', "no valid JSON"),
                                        ("[1, 2]", "a JSON list")])
def test_a_malformed_line_before_the_last_is_an_error_naming_file_and_line(tmp_path, bad,
                                                                          found):
    path = str(tmp_path / "rows.jsonl")
    write(path, json.dumps(ROW0) + "\n" + bad + "\n" + json.dumps(ROW1) + "\n")
    with pytest.raises(DataError) as err:
        read_rows(path)
    message = str(err.value)
    assert message.startswith(f"{path}:2: expected one JSON object per line")
    assert found in message and "\n" not in message
    # the last line, complete but malformed, is no cut row either
    write(path, json.dumps(ROW0) + "\n" + bad + "\n")
    with pytest.raises(DataError, match=f"{path}:2: "):
        read_rows(path)


def run_main(capsys, *args):
    return exit_and_errors(main, capsys, *args)


def test_plot_of_rows_with_a_malformed_line(tmp_path, capsys):
    rows = str(tmp_path / "sweep" / "rows.jsonl")
    write(rows, json.dumps(ROW0) + "\nnot json\n" + json.dumps(ROW1) + "\n")
    code, errors = run_main(capsys, "plot", str(tmp_path / "sweep"), "--out",
                            str(tmp_path / "plots"))
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: {rows}:2: expected one JSON object per line")
    assert not (tmp_path / "plots").exists()


def test_sweep_over_rows_with_a_malformed_line_trains_nothing(tmp_path, tiny_cub, capsys):
    out = tmp_path / "k"
    rows = str(out / "rows.jsonl")
    write(rows, json.dumps(ROW0) + "\n{oops\n" + '{"run": "k=8/s')
    code, errors = run_main(capsys, "sweep", "--config-name", "clinfonce_kmeans_synthetic_cub",
                            f"data.train_path={tiny_cub}", "--k", "4", "8", "--seeds", "0",
                            "--out", str(out), "--epochs", "1", "optimizer.batch_size=12",
                            "data.num_workers=0")
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: {rows}:2: expected one JSON object per line")
    assert not (out / "runs").exists()
    with open(rows) as f:  # the complete lines are kept as they were
        assert f.read() == json.dumps(ROW0) + "\n{oops\n"
