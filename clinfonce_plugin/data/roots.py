"""The folder a dataset's files are in when ``data.train_path`` points one level above it:
extracting an archive often adds a top folder (CUB's ``CUB_200_2011/``, a folder wrapping
the UT-Zappos50K or WIDER Attribute release). A reader calls ``dataset_folder`` first, then
reads the folder it returns as usual."""
import os
from pathlib import Path
from typing import Callable, List


def _subfolders(root: Path) -> List[Path]:
    with os.scandir(root) as entries:
        return sorted(Path(e.path) for e in entries
                      if e.is_dir() and not e.name.startswith("."))


def dataset_folder(root: Path, holds_dataset: Callable[[Path], bool], what: str) -> Path:
    """``root`` when it is not a directory or ``holds_dataset(root)``; else its only
    non-hidden sub-folder for which ``holds_dataset`` is true; else ``root`` (the reader's
    own error then names the files it misses).

    Raises:
        FileNotFoundError: several sub-folders hold the dataset (``what`` names it).
    """
    if not root.is_dir() or holds_dataset(root):
        return root
    found = [sub for sub in _subfolders(root) if holds_dataset(sub)]
    if len(found) > 1:
        raise FileNotFoundError(f"{what}: {root} holds no dataset itself and several folders "
                                f"inside it do ({', '.join(f'{f.name}/' for f in found)}); "
                                f"set data.train_path to the one to read")
    return found[0] if found else root
