"""``python -m clinfonce_plugin.study {families,sweep,plot} ...``: see docs/study.md.

    python -m clinfonce_plugin.study families --config-name clinfonce_synthetic_cub_bench \\
        --out study/families
    python -m clinfonce_plugin.study sweep --config-name clinfonce_synthetic_cub_bench \\
        --family-file study/families/fixed_h_zt.csv --seeds 0 1 --out study/fixed_h_zt
    python -m clinfonce_plugin.study sweep --config-name clinfonce_kmeans_synthetic_cub \\
        --k 10 40 160 --seeds 0 1 --out study/kmeans
    python -m clinfonce_plugin.study plot study/fixed_h_zt study/kmeans --out study/plots

Trailing ``key=value`` arguments override the pretrain config as on ``main_pretrain.py``.
A user error prints one ``error:`` line and exits with code 2 before anything trains.
"""
import argparse
import os
import sys
from typing import List, Optional

from ..cli import EXIT_INTERRUPTED, EXIT_USER_ERROR, one_line
from ..errors import ConfigError, Interrupted, UserError

# --preset: the part-4 measurement on the embedded benchmark data (docs/study.md), sized
# for about an hour per figure on 2 CPU cores
PRESETS = {
    "cub_bench": {
        "config_name": "clinfonce_synthetic_cub_bench",
        "kmeans_config_name": "clinfonce_kmeans_synthetic_cub",
        "overrides": ["data.dataset=synthetic_cub_bench",
                      "data.train_path=./datasets/synthetic_cub_bench", "optimizer.lr=0.2"],
        "epochs": 25, "linear_epochs": None, "seeds": [0, 1],
    },
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clinfonce_plugin.study",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    fam = sub.add_parser("families", help="build the cluster families of a training split")
    fam.add_argument("--config-name", default=None, help="pretrain config (scripts/pretrain)")
    fam.add_argument("--preset", choices=list(PRESETS), default=None)
    fam.add_argument("--family", nargs="+", default=["all"],
                     help="fixed_h_zt, fixed_i_zt, fixed_h_z, or all (default)")
    fam.add_argument("--branch", type=int, default=2, help="branching of the hierarchies")
    fam.add_argument("--labels", default=None,
                     help="csv with columns path and --labels-column: the labels T (default: "
                          "the dataset's)")
    fam.add_argument("--labels-column", default="label")
    fam.add_argument("--out", required=True, help="directory of the family files")
    fam.add_argument("--overwrite", action="store_true")
    fam.add_argument("overrides", nargs="*", metavar="key=value")

    sw = sub.add_parser("sweep", help="train and evaluate over a family, k list or levels")
    sw.add_argument("--config-name", default=None, help="pretrain config (scripts/pretrain)")
    sw.add_argument("--preset", choices=list(PRESETS), default=None)
    what = sw.add_mutually_exclusive_group(required=True)
    what.add_argument("--family-file", help="a family csv written by 'families'")
    what.add_argument("--k", type=int, nargs="+", help="k of the kmeans provider")
    what.add_argument("--levels", type=int, nargs="+", help="levels of the hierarchy provider")
    sw.add_argument("--members", nargs="+", default=None,
                    help="family members to train (default: all of the file)")
    sw.add_argument("--every", type=int, default=1,
                    help="train every n-th member of the file (its first and last always)")
    sw.add_argument("--seeds", type=int, nargs="+", default=None)
    sw.add_argument("--epochs", type=int, default=None, help="pretrain epochs (default: "
                    "the config's)")
    sw.add_argument("--linear-epochs", type=int, default=None,
                    help="linear classifier epochs (default: the protocol's)")
    sw.add_argument("--out", required=True, help="sweep directory (sweep.json, rows.jsonl)")
    sw.add_argument("--work-dir", default=None,
                    help="where the runs' checkpoints and logs go (default: <out>/runs)")
    sw.add_argument("overrides", nargs="*", metavar="key=value")

    pl = sub.add_parser("plot", help="figures and CSVs from sweep directories")
    pl.add_argument("sweeps", nargs="+", help="sweep directories (--out of 'sweep')")
    pl.add_argument("--out", required=True, help="directory of the PNGs and CSVs")
    return parser


def _preset(args, kmeans: bool = False) -> None:
    """Fills the arguments a preset sets and the command line left unset."""
    preset = PRESETS.get(args.preset) if args.preset else None
    if preset is not None:
        if args.config_name is None:
            args.config_name = preset["kmeans_config_name" if kmeans else "config_name"]
        args.overrides = preset["overrides"] + list(args.overrides)
        for key in ("epochs", "linear_epochs", "seeds"):
            if getattr(args, key, "absent") is None:
                setattr(args, key, preset[key])
    if args.config_name is None:
        raise ConfigError("give --config-name <pretrain config> (or --preset)")


def _families(args) -> None:
    from .build import check_families, format_tables, write_families
    from .data import compose_pretrain, training_labels

    _preset(args)
    names = check_families(args.family)
    if args.branch < 2:
        raise ConfigError(f"--branch must be >= 2, got {args.branch}")
    cfg = compose_pretrain(args.config_name, args.overrides)
    checked, labels, paths = training_labels(cfg, args.labels, args.labels_column)
    tables = write_families(names, labels, paths, args.out, args.branch, args.overwrite)
    print(f"[study] {checked.data.dataset} training split at {checked.data.train_path}: "
          f"{labels.size} images, {len(set(labels.tolist()))} classes")
    print(format_tables(tables))
    print(f"[study] family files and tables in {args.out}")


def _members(args) -> List[str]:
    from .sweep import family_members

    if not os.path.isfile(args.family_file):
        raise ConfigError(f"--family-file {args.family_file}: no such file")
    members = family_members(args.family_file)
    if args.members:
        return list(args.members)  # checked against the file by check_plan
    if args.every < 1:
        raise ConfigError(f"--every must be >= 1, got {args.every}")
    keep = members[::args.every]
    if members and members[-1] not in keep:
        keep.append(members[-1])
    return keep


def _sweep(args) -> None:
    from .data import compose_pretrain
    from .sweep import Plan, run_sweep

    _preset(args, kmeans=args.k is not None)
    if args.seeds is None:
        args.seeds = [0]
    if args.family_file:
        args.family_file = os.path.abspath(args.family_file)
        kind, values = "member", _members(args)
        family = os.path.splitext(os.path.basename(args.family_file))[0]
    else:
        kind, values, family = ("k", args.k, None) if args.k else ("level", args.levels, None)
    plan = Plan(kind=kind, values=values, seeds=list(args.seeds), config_name=args.config_name,
                overrides=list(args.overrides), family_file=args.family_file, family=family,
                epochs=args.epochs, linear_epochs=args.linear_epochs)
    base = compose_pretrain(args.config_name, args.overrides)
    rows = run_sweep(plan, base, args.out, args.work_dir)
    print(f"[study] {len(rows)} rows in {os.path.join(args.out, 'rows.jsonl')}")


def _plot(args) -> None:
    from .plot import plot_sweeps

    for path in plot_sweeps(args.sweeps, args.out):
        print(f"[study] {path}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = _parser()
    # key=value overrides may come before, between or after the options
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or "=" not in e]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    job = {"families": _families, "sweep": _sweep, "plot": _plot}[args.command]
    try:
        from ..run.lightning_noise import lightning_noise_filtered

        with lightning_noise_filtered():
            job(args)
    except Interrupted as err:  # Ctrl-C inside a run: the message says where it stopped
        print(f"error: {one_line(err)}; run the same command again to continue",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except UserError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); run the same command again to continue",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
