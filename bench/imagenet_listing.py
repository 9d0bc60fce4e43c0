"""Time of listing an ImageNet-100 folder with the imagenet100 reader (no image is opened).

Generates a tree of the real shape (default 100 wnid folders x 1,300 empty .JPEG files in
train/, 50 per class in val/, the real ImageNet-100 holds 126,689 + 5,000 files) and times
``list_imagenet`` on it, the first call (directory entries just written, so in the page
cache) and the median of the next ones::

    python bench/imagenet_listing.py [--classes 100] [--per-class 1300] [--repeats 5]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clinfonce_plugin.data.imagenet import build_imagenet100, list_imagenet  # noqa: E402


def make_tree(root: str, classes: int, per_class: int, per_class_val: int) -> str:
    wnids = [f"n{1440764 + 7919 * c:08d}" for c in range(classes)]
    for split, count in (("train", per_class), ("val", per_class_val)):
        for wnid in wnids:
            folder = os.path.join(root, split, wnid)
            os.makedirs(folder)
            for k in range(count):
                open(os.path.join(folder, f"{wnid}_{k}.JPEG"), "wb").close()
    class_list = os.path.join(root, "classes.txt")
    with open(class_list, "w") as f:
        f.write("\n".join(wnids) + "\n")
    return class_list


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=1300)
    parser.add_argument("--per-class-val", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        class_list = make_tree(root, args.classes, args.per_class, args.per_class_val)
        out = {}
        for split in ("train", "test"):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                paths, labels, _, _ = list_imagenet(root, split, class_list)
                times.append(time.perf_counter() - start)
            out[split] = {"files": len(paths), "first_s": times[0],
                          "median_s": statistics.median(times[1:] or times)}
            print(f"list_imagenet {split}: {len(paths)} files, {args.classes} classes: first "
                  f"{times[0]:.3f} s, median of the next {len(times) - 1}: "
                  f"{out[split]['median_s']:.3f} s")
        start = time.perf_counter()
        build_imagenet100(root, "train", class_list=class_list)
        out["build_train_s"] = time.perf_counter() - start
        print(f"build_imagenet100 train (listing + SampleInfo + absolute paths): "
              f"{out['build_train_s']:.3f} s")
    return out


if __name__ == "__main__":
    main()
