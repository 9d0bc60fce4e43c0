"""16-bit greyscale images are scaled to 8 bits by their high byte (not clipped at 255), and
32-bit integer or float images, whose range is unknown, are refused by the image check and
the loader. Files are written from numpy arrays; the expected 8-bit values are worked out by
hand (v >> 8)."""
import numpy as np
import pytest
from PIL import Image

from clinfonce_plugin.data.images import ImageFiles, load_rgb, to_rgb, verify_images
from clinfonce_plugin.errors import DataError

SIXTEEN = np.array([[0, 255, 256, 0x1234], [0x8000, 0xFFFF, 0xAAAA, 0x01FF]], dtype=np.uint16)
EIGHT = np.array([[0, 0, 1, 0x12], [0x80, 0xFF, 0xAA, 0x01]], dtype=np.uint8)  # by hand


def _rgb_equals(image: Image.Image, expected: np.ndarray) -> None:
    assert image.mode == "RGB" and image.size == expected.shape[::-1]
    pixels = np.asarray(image)
    for channel in range(3):
        assert pixels[..., channel].tolist() == expected.tolist()


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(SIXTEEN).save(path)
    with Image.open(path) as raw:  # the file really holds 16-bit greyscale
        assert raw.mode in ("I;16", "I") and np.asarray(raw).tolist() == SIXTEEN.tolist()
    assert verify_images([path], "x") == 1
    _rgb_equals(load_rgb(path), EIGHT)
    image, label = ImageFiles([path], np.array([3]))[0]
    _rgb_equals(image, EIGHT)
    assert label == 3


def test_16_bit_big_endian_tiff_is_scaled(tmp_path):
    path = tmp_path / "depth.tif"
    Image.fromarray(SIXTEEN.astype(">u2")).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I;16B"
    _rgb_equals(load_rgb(path), EIGHT)


def test_mode_i_png_of_older_pillow_is_scaled():
    # Pillow before 10.3 opened 16-bit greyscale PNGs in mode I (32-bit storage)
    image = Image.fromarray(SIXTEEN.astype(np.int32))
    assert image.mode == "I"
    _rgb_equals(to_rgb(image, "PNG"), EIGHT)


def test_32_bit_integer_and_float_images_are_refused(tmp_path):
    wide = tmp_path / "wide.tif"
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(wide)
    real = tmp_path / "real.tif"
    Image.fromarray(np.array([[0.25, 0.5]], dtype=np.float32)).save(real)
    with pytest.raises(DataError) as err:
        verify_images([wide, real], "the test split")
    message = str(err.value)
    assert message.startswith("2 of 2 image file(s) of the test split are unusable: ")
    assert (f"{wide} has 32-bit integer pixels (PIL mode I) whose range is not known; "
            f"convert it to 8 or 16 bits per channel") in message
    assert f"{real} has 32-bit floating-point pixels (PIL mode F)" in message
    with pytest.raises(DataError, match=rf"image {wide} cannot be decoded: ValueError: has "
                                        rf"32-bit integer pixels"):
        load_rgb(wide)
