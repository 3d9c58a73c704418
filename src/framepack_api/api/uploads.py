"""Image input from multipart or base64: decode with Pillow, enforce limits, normalise to PNG.

Everything is checked before anything is written, so a refused request leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from framepack_api.errors import InvalidInput
from framepack_api.params.fields import text_problem

_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)


def form_text(field: str, value: str) -> str:
    """A multipart or urlencoded form value, refused when no database could store it (NUL, surrogates)."""
    for text in (field, value):
        problem = text_problem(text)
        if problem:
            raise InvalidInput(field.replace("\x00", "") or "body", problem)
    return value


def decode_base64(field: str, value: str, max_bytes: int) -> bytes:
    text = _DATA_URL.sub("", value.strip(), count=1)
    # base64 inflates by 4/3: refuse before decoding what would be too big anyway.
    if len(text) * 3 // 4 > max_bytes + 3:
        raise InvalidInput(field, f"image is larger than the {max_bytes} byte limit", too_large=True)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(field, f"not valid base64 ({exc})") from None
    return data


def check_size(field: str, data: bytes, max_bytes: int) -> None:
    if not data:
        raise InvalidInput(field, "empty file")
    if len(data) > max_bytes:
        raise InvalidInput(field, f"file is {len(data)} bytes; the limit is {max_bytes}", too_large=True)


def normalise_image(field: str, data: bytes, max_pixels: int) -> bytes:
    """Decode, honour EXIF orientation, flatten transparency onto white; return RGB PNG bytes."""
    try:
        with warnings.catch_warnings():
            # Our own cap, checked below from the header, is the one that speaks to the client.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidInput(field, f"image is {width}x{height} = {width * height} pixels; "
                                          f"the limit is {max_pixels}", too_large=True)
            img.load()
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:  # so large that Pillow refuses to even open it
        raise InvalidInput(field, f"image has too many pixels ({exc})", too_large=True) from None
    except UnidentifiedImageError:
        raise InvalidInput(field, "not a decodable image (PNG, JPEG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(field, f"image is corrupt or truncated ({exc})") from None
    rgb = _flatten(ImageOps.exif_transpose(img))
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


def _flatten(img: Image.Image) -> Image.Image:
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")
