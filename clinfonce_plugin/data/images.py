"""Reading image files: a fast check of every file before training (header, and the end
marker of JPEG and PNG files, so truncated files are caught), and a loader whose errors
always name the file.

16-bit greyscale images (PIL modes ``I;16``, ``I;16B``, ... and the mode ``I`` Pillow
before 10.3 opens 16-bit PNGs in) are scaled to 8 bits by their high byte (value >> 8, so
0..65535 maps onto 0..255); ``convert("RGB")`` alone would clip every value above 255 to
white. 32-bit integer or float pixels (modes ``I`` of other formats, ``F``) have no known
range: the check refuses them. Colour images with 16 bits per channel are opened by Pillow
as 8-bit ``RGB``/``RGBA`` already."""
import os
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from clinfonce_plugin.errors import DataError

AUTO_VERIFY_LIMIT = 100_000  # data.verify_images=auto checks splits smaller than this
_TAIL = 64  # bytes read from the end of a file for its end marker


def _problem(path: Path) -> Union[str, None]:
    """What is wrong with the image file, or None."""
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with Image.open(path) as img:
            fmt, mode = img.format, img.mode
            img.size  # noqa: B018 - parsed from the header
    except Exception as err:  # noqa: BLE001 - PIL raises many types for bad headers
        return f"is not a readable image ({type(err).__name__}: {err})"
    with open(path, "rb") as f:
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    unscaled = _unscaled(mode, fmt)
    if unscaled:
        return unscaled
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "is a truncated JPEG (no end-of-image marker)"
    if fmt == "PNG" and b"IEND" not in tail:
        return "is a truncated PNG (no IEND chunk)"
    return None


def verify_images(files: Iterable[Union[str, Path]], where: str) -> int:
    """Checks every file; raises DataError listing all bad files at once. Returns the count."""
    bad: List[Tuple[Path, str]] = []
    count = 0
    for file in files:
        count += 1
        problem = _problem(Path(file))
        if problem:
            bad.append((Path(file), problem))
    if bad:
        listing = "; ".join(f"{p} {why}" for p, why in bad[:20])
        more = f" (and {len(bad) - 20} more)" if len(bad) > 20 else ""
        raise DataError(f"{len(bad)} of {count} image file(s) of {where} are unusable: "
                        f"{listing}{more}. Replace or remove them (data.verify_images=false "
                        f"skips this check)")
    return count


def should_verify(setting, num_files: int) -> bool:
    """data.verify_images: true, false, or 'auto' (on below AUTO_VERIFY_LIMIT files)."""
    if setting == "auto":
        return num_files < AUTO_VERIFY_LIMIT
    return bool(setting)


def _sixteen_bit(mode: str, fmt: Optional[str]) -> bool:
    """Greyscale pixels of 16 bits: the I;16 modes, or mode I of a PNG (Pillow < 10.3)."""
    return mode.startswith("I;16") or (mode == "I" and fmt == "PNG")


def _unscaled(mode: str, fmt: Optional[str]) -> Optional[str]:
    """Why pixels of this mode cannot be scaled to 8 bits, or None when they can."""
    if mode in ("I", "F") and not _sixteen_bit(mode, fmt):
        kind = "integer" if mode == "I" else "floating-point"
        return (f"has 32-bit {kind} pixels (PIL mode {mode}) whose range is not known; "
                f"convert it to 8 or 16 bits per channel")
    return None


def to_rgb(img: Image.Image, fmt: Optional[str]) -> Image.Image:
    """``img`` (read from a file of format ``fmt``) as 8-bit RGB: 16-bit greyscale scaled by
    its high byte (value >> 8), everything else by ``convert("RGB")``.

    Raises:
        ValueError: 32-bit integer or float pixels (see ``_unscaled``).
    """
    if _sixteen_bit(img.mode, fmt):
        values = np.asarray(img).astype(np.uint32)  # I;16B comes as big-endian uint16
        return Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")  # 2-D uint8: L
    unscaled = _unscaled(img.mode, fmt)
    if unscaled:
        raise ValueError(unscaled)
    return img.convert("RGB")


def load_rgb(path: Union[str, Path]) -> Image.Image:
    """The image as 8-bit RGB, fully decoded (``to_rgb``); any failure is a DataError naming
    the file."""
    try:
        with Image.open(path) as img:
            return to_rgb(img, img.format)
    except Exception as err:  # noqa: BLE001 - decoding errors come in many types
        raise DataError(f"image {os.fspath(path)} cannot be decoded: "
                        f"{type(err).__name__}: {err}") from None


class ImageFiles(Dataset):
    """Image files in dataset order -> (PIL RGB image, or transform(image), target).

    The readers' datasets are this class or subclasses of it (which only compute ``files``
    and ``targets`` from their metadata, or change ``load``).

    Attributes:
        files: image paths in dataset order (``verify_images`` checks them).
        targets: (N,) int64 labels, -1 where unknown.
    """

    def __init__(self, files: Sequence, targets: np.ndarray,
                 transform: Optional[Callable] = None) -> None:
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {type(transform).__name__}")
        self.files = list(files)
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> Image.Image:
        """Image i as an RGB PIL image."""
        return load_rgb(self.files[i])

    def __getitem__(self, i: int):
        image = self.load(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[i])
