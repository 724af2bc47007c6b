"""Parse stage helper: an HTML page's bytes -> the same page in UTF-8, and how it was read.

Input: the body bytes and the charset of the HTTP Content-Type (None if it names none).
Output: `Decoded`, the markup as UTF-8 bytes (both page readers, bs4 in `_html` and lxml in
`_tree`, are then told "utf-8" and read the same characters) and `encoding_override`
warnings when the bytes were not what the page said (FAULTS C4).

Which encoding, first that fits (the WHATWG order, deterministic: no guessing library):
1. a byte order mark;
2. the HTTP charset, then the page's `<meta>` (or XML) declaration, each if Python knows
   it and the bytes decode in it. A declaration that names a legacy charset while the
   bytes are valid UTF-8 with non-ASCII characters is overruled: UTF-8 (real text in a
   legacy charset is practically never valid UTF-8; a server's default `iso-8859-1` in
   front of a UTF-8 page is common);
3. UTF-8;
4. mostly UTF-8: valid multi-byte sequences, and at most 5 % of the non-ASCII characters
   invalid (each read as U+FFFD), e.g. a UTF-8 page cut mid-character or with one stray
   byte;
5. windows-1252 (WHATWG's reading of `iso-8859-1` and `us-ascii` too), where the five bytes
   that code page leaves undefined read as the C1 controls of the same number, as browsers
   read them; so a page never comes out empty for its bytes.
Must not import the network, other stages, or anything outside `aggregator.parse`.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from bs4.dammit import EncodingDetector

_UTF8 = "utf-8"
_WINDOWS_1252 = "cp1252"
# WHATWG's labels for windows-1252: a page declaring these is read as windows-1252.
_LATIN1_LIKE = frozenset({"latin-1", "iso8859-1", "ascii", "cp1252"})
# Declared in an ASCII-compatible page, a UTF-16/32 label cannot be right (WHATWG: UTF-8).
_WIDE = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
# Of the non-ASCII characters of a mostly-UTF-8 page, at most this share may be invalid.
MAX_INVALID_SHARE = 0.05
_C1_ERRORS = "aggregator-c1"


def _undefined_as_c1(error: UnicodeError) -> tuple[str, int]:
    """A windows-1252 byte the code page leaves undefined -> the C1 control it numbers."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(map(chr, bad)), error.end


codecs.register_error(_C1_ERRORS, _undefined_as_c1)


@dataclass(frozen=True, slots=True)
class Decoded:
    markup: bytes  # the page in UTF-8, without a byte order mark
    encoding: str  # the Python codec it was read in ("utf-8" when it already was UTF-8)
    warnings: tuple[str, ...] = ()


def decode_page(content: bytes, http_charset: str | None = None) -> Decoded:
    """The page's markup in UTF-8, read in the first encoding that fits (see the module)."""
    markup, bom = EncodingDetector.strip_byte_order_mark(content)
    if bom is not None:
        return _as(markup, codecs.lookup(bom).name, errors="replace")
    warnings: list[str] = []
    declared = EncodingDetector.find_declared_encoding(markup, is_html=True)
    for name, where in ((http_charset, "the HTTP Content-Type"), (declared, "the page")):
        if not name:
            continue
        codec = _codec(name)
        if codec is None:
            warnings.append(
                f"encoding_override: {where} names the unknown charset {name!r}; ignored"
            )
            continue
        if codec != _UTF8 and _is_utf8(markup):
            warnings.append(
                f"encoding_override: {where} declares {name}, but the bytes are UTF-8; "
                "read as UTF-8"
            )
            return Decoded(markup, _UTF8, tuple(warnings))
        try:
            return _as(markup, codec, warnings=warnings)
        except UnicodeDecodeError as e:
            warnings.append(
                f"encoding_override: {where} declares {name}, but byte {e.start} is not "
                f"{name}; read in another encoding"
            )
    if _is_utf8(markup) or markup.isascii():
        return Decoded(markup, _UTF8, tuple(warnings))
    text = markup.decode(_UTF8, errors="replace")
    if _mostly_utf8(text):
        warnings.append(
            f"encoding_override: {text.count(chr(0xFFFD))} invalid UTF-8 sequences read as U+FFFD"
        )
        return Decoded(text.encode(_UTF8), _UTF8, tuple(warnings))
    try:
        return _as(markup, _WINDOWS_1252, warnings=warnings)
    except UnicodeDecodeError:
        warnings.append(
            "encoding_override: read as windows-1252; its undefined bytes (0x81, 0x8D, "
            "0x8F, 0x90, 0x9D) as C1 controls"
        )
        return _as(markup, _WINDOWS_1252, warnings=warnings, errors=_C1_ERRORS)


def _as(
    markup: bytes, codec: str, *, warnings: list[str] | None = None, errors: str = "strict"
) -> Decoded:
    """The markup read in `codec` (a `UnicodeDecodeError` if strict and it does not fit)."""
    if codec == _UTF8 and errors == "strict":
        markup.decode(_UTF8)  # raises unless it is UTF-8; then it is used as it is
        return Decoded(markup, codec, tuple(warnings or ()))
    return Decoded(markup.decode(codec, errors).encode(_UTF8), codec, tuple(warnings or ()))


def _codec(name: str) -> str | None:
    """The Python codec for a charset label (WHATWG's readings of the Latin-1 family and of
    wide encodings declared in ASCII markup), None if Python knows no such codec."""
    try:
        codec = codecs.lookup(name.strip().lower()).name
    except (LookupError, ValueError):
        return None
    if codec in _LATIN1_LIKE:
        return _WINDOWS_1252
    if codec in _WIDE:
        return _UTF8
    return codec


def _is_utf8(markup: bytes) -> bool:
    """Valid UTF-8 holding at least one non-ASCII character."""
    if markup.isascii():
        return False
    try:
        markup.decode(_UTF8)
    except UnicodeDecodeError:
        return False
    return True


def _mostly_utf8(text: str) -> bool:
    """`text`, decoded as UTF-8 with replacement, holds valid multi-byte characters and few
    invalid ones (each U+FFFD; a page's own U+FFFD counts as invalid: the safe side)."""
    invalid = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    valid = non_ascii - invalid
    return valid > 0 and invalid <= MAX_INVALID_SHARE * non_ascii
