"""Time of ``read_wider`` (the WIDER Attribute reader) on annotation files of the release's size.

    python bench/wider_read.py            # 13,789 images, 57,524 persons (the release)
    python bench/wider_read.py --quick    # 60 images (the smoke test runs this)

Writes both JSON files in the official structure into a temporary directory (random
attribute values, 30 scenes; no image files: ``read_wider`` opens none) and reports the
best of ``--repeats`` wall-clock times of ``json.loads`` of both files alone and of the
whole ``read_wider``.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from clinfonce_plugin.data.wider import (TEST_JSON, TRAINVAL_JSON,  # noqa: E402
                                         read_wider)

FULL = (6_871, 6_918, 57_524)  # trainval images, test images, persons (the release)
QUICK = (30, 30, 120)


def write_release(root: Path, trainval: int, test: int, persons: int, seed: int = 0) -> None:
    """root/wider_attribute_annotation/*.json of the given sizes, and an empty Image/."""
    rng = np.random.default_rng(seed)
    total = trainval + test
    per_image = np.full(total, persons // total)
    per_image[: persons - int(per_image.sum())] += 1
    folder = root / "wider_attribute_annotation"
    folder.mkdir(parents=True)
    (root / "Image").mkdir()
    maps = {"attribute_id_map": {str(a): f"attribute{a}" for a in range(14)},
            "scene_id_map": {str(s): f"scene{s}" for s in range(30)}}
    for name, lo, hi in ((TRAINVAL_JSON, 0, trainval), (TEST_JSON, trainval, total)):
        images = []
        for i in range(lo, hi):
            split = "test" if i >= trainval else ("train" if i < 0.8 * trainval else "val")
            images.append({
                "targets": [{"attribute": rng.choice([1, -1, 0], 14).tolist(),
                             "bbox": [1.0, 2.0, 30.0, 60.0]} for _ in range(per_image[i])],
                "file_name": f"{split}/{i % 30}--Scene/{i}.jpg", "scene_id": i % 30})
        (folder / name).write_text(json.dumps({"images": images, **maps}))


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    trainval, test, persons = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wider_attribute"
        write_release(root, trainval, test, persons)
        files = [root / "wider_attribute_annotation" / n for n in (TRAINVAL_JSON, TEST_JSON)]
        parse, read = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for f in files:
                json.loads(f.read_text(encoding="utf-8-sig"))
            parse.append(time.perf_counter() - start)
            start = time.perf_counter()
            meta = read_wider(root)
            read.append(time.perf_counter() - start)
        size_kib = sum(f.stat().st_size for f in files) // 1024
    result = {"images": meta.num_samples, "persons": int(meta.num_persons.sum()),
              "json_kib": size_kib, "json_loads_s": min(parse), "read_wider_s": min(read)}
    print(f"{result['images']} images, {result['persons']} persons, {size_kib} KiB of JSON: "
          f"json.loads {result['json_loads_s']:.2f} s, read_wider {result['read_wider_s']:.2f} s "
          f"(best of {args.repeats})")
    return result


if __name__ == "__main__":
    main()
