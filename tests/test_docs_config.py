"""docs/configuration.md documents exactly the config keys the code defines, with their real
defaults: every documented key exists in the defaults tables and every default key is
documented (pretrain, refused solo-learn keys, each method's kwargs, each provider's
parameters, the runtime's methods, linear, kNN, fine-tuning, t-SNE pictures)."""
import os
import re
from collections import defaultdict

import pytest

from clinfonce_plugin.clusters.registry import CLUSTER_PROVIDERS
from clinfonce_plugin.config import AUGMENTATION, FINETUNE, KNN, LINEAR, PLOT, PRETRAIN, \
    REQUIRED, UNSUPPORTED, documented_keys
from clinfonce_plugin.host.runtime.args import OPTIMIZER_KWARGS
from clinfonce_plugin.host.runtime.methods import MOCOV2PLUS_KWARGS, PROJECTOR_KWARGS, \
    SWAV_KWARGS
from clinfonce_plugin.methods import clinfonce, cluster_ce, cmc_attributes, pcl, wcl

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "configuration.md")
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]*) \|")


def _documented():
    """{section heading: {key: default as written}} of the reference's tables."""
    sections, heading = defaultdict(dict), None
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                heading = line[3:].strip()
                sections[heading]  # noqa: B018 - sections without a table document no key
            match = ROW.match(line)
            if match and heading is not None:
                sections[heading][match.group(1)] = match.group(2).strip()
    return sections


def _shown(default) -> str:
    return "required" if default is REQUIRED or default == "???" else str(default)


def _kwargs(table, prefix="method_kwargs."):
    out = {}
    for key, default in table.items():
        default = getattr(default, "default", default)
        out[prefix + key] = _shown(default)
        if key == "clusters":
            out[prefix + "clusters.provider"] = default["provider"]
    return out


def _expected():
    pretrain = {k: _shown(spec.default) for k, spec in documented_keys(PRETRAIN).items()
                if k not in ("augmentations", "method_kwargs")}
    pretrain.update({f"augmentations[*].{k}": _shown(spec.default)
                     for k, spec in documented_keys(AUGMENTATION).items()})
    for kwargs in OPTIMIZER_KWARGS.values():
        pretrain.update({f"optimizer.kwargs.{k}": str(v) for k, v in kwargs.items()})
    expected = {
        "pretrain": pretrain,
        "Refused solo-learn keys": set(UNSUPPORTED),
        "`method_kwargs` of `clinfonce`": _kwargs(clinfonce.METHOD_KWARGS),
        "`method_kwargs` of `cluster_ce`": _kwargs(cluster_ce.METHOD_KWARGS),
        "`method_kwargs` of `cmc_attributes`": _kwargs(cmc_attributes.METHOD_KWARGS),
        "`method_kwargs` of `pcl`": _kwargs(pcl.METHOD_KWARGS),
        "`method_kwargs` of `wcl`": _kwargs(wcl.METHOD_KWARGS),
        "`method_kwargs` of the bundled runtime's `simclr` and `supcon`":
            _kwargs(PROJECTOR_KWARGS),
        "`method_kwargs` of the bundled runtime's `swav`": _kwargs(SWAV_KWARGS),
        "`method_kwargs` of the bundled runtime's `mocov2plus`": _kwargs(MOCOV2PLUS_KWARGS),
        "Linear evaluation (`main_linear.py`)":
            {k: _shown(spec.default) for k, spec in documented_keys(LINEAR).items()},
        "kNN evaluation (`main_knn.py`)":
            {k: _shown(spec.default) for k, spec in documented_keys(KNN).items()},
        "t-SNE pictures (`python -m clinfonce_plugin.plot_embedding`)":
            {k: _shown(spec.default) for k, spec in documented_keys(PLOT).items()},
        "Fine-tuning (`main_finetune.py`)":
            {k: _shown(spec.default) for k, spec in documented_keys(FINETUNE).items()},
    }
    for name, cls in CLUSTER_PROVIDERS.items():
        expected[f"Cluster provider `{name}`"] = _kwargs(cls.PARAMS, "method_kwargs.clusters.")
    return expected


def test_the_reference_has_every_section():
    sections = _documented()
    missing = [h for h in _expected() if h != "pretrain" and h not in sections]
    assert not missing and any(h.startswith("Pretrain:") for h in sections)


@pytest.mark.parametrize("section", list(_expected()))
def test_documented_keys_and_defaults_equal_the_code(section):
    docs, code = _documented(), _expected()[section]
    if section == "pretrain":
        got = {k: v for h, rows in docs.items() if h.startswith("Pretrain:")
               for k, v in rows.items()}
    else:
        got = docs[section]
    if isinstance(code, set):
        assert set(got) == code
        return
    assert sorted(set(got) - set(code)) == [], "documented but not in the code"
    assert sorted(set(code) - set(got)) == [], "in the code but not documented"
    assert {k: got[k] for k in code} == code
