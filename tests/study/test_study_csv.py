"""The study's CSV files (``study families`` and ``study plot`` write them with one writer):
the exact text for small inputs, worked out by hand."""
import os

import numpy as np

from clinfonce_plugin.study.build import write_families
from clinfonce_plugin.study.plot import _write_csv


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_family_files_text(tmp_path):
    labels = np.array([0, 0, 1, 1])
    write_families(["fixed_h_zt"], labels, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], str(tmp_path))
    # two classes of two images: label_gran_0 is the classes (ids in a random class order),
    # label_gran_1 one cluster; I(Z;T) = H(Z) = 1 bit and 0, H(Z|T) = 0 in both
    assert read(tmp_path / "fixed_h_zt-table.csv") == (
        b"member,clusters,I(Z;T),H(Z|T),H(Z)\r\n"
        b"label_gran_0,2,1,0,1\r\n"
        b"label_gran_1,1,0,0,0\r\n")
    family = read(tmp_path / "fixed_h_zt.csv")
    assert family in [b"path,class,label_gran_0,label_gran_1\r\n"
                      + b"".join(b"%s.jpg,%d,%d,0\r\n" % (p, c, g) for p, c, g in
                                 zip([b"a", b"b", b"c", b"d"], labels, ids))
                      for ids in (labels, 1 - labels)]
    assert sorted(os.listdir(tmp_path)) == ["fixed_h_zt-table.csv", "fixed_h_zt.csv"]


def test_plot_table_text(tmp_path):
    path = str(tmp_path / "points.csv")
    _write_csv(path, [{"value": "label_gran_0", "seeds": 3, "I(Z;T)": 2.0 / 3.0,
                       "rho_per_seed": "0.500 -1.000"},
                      {"value": 'a "b", c', "seeds": 1, "I(Z;T)": 1234567.0,
                       "rho_per_seed": ""}])
    assert read(path) == (b"value,seeds,I(Z;T),rho_per_seed\r\n"
                          b"label_gran_0,3,0.666667,0.500 -1.000\r\n"
                          b'"a ""b"", c",1,1.23457e+06,\r\n')
    _write_csv(path, [])
    assert read(path) == b"\r\n"
    assert os.listdir(tmp_path) == ["points.csv"]
