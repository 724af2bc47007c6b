"""Parse stage, step one: raw response bytes -> what kind of document they hold.

Input: the body bytes and the Content-Type header (may be absent or lying).
Output: a `Sniffed` value (document kind, the bytes to hand to the parser, warnings).
It undoes what servers get wrong before a parser sees the bytes: gzip without
Content-Encoding, junk before the XML declaration. Pure; must not import the network,
other stages, or anything outside `aggregator.parse`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Literal

from aggregator.parse._errors import Unreadable

DocKind = Literal["feed", "xml", "json", "html", "unknown"]

# A gzip body decoded past this is a bomb, not a feed (the fetch limit is 10 MiB by default).
MAX_DECODED_BYTES = 32 * 1024 * 1024
_SNIFF_BYTES = 8192

_GZIP_MAGIC = b"\x1f\x8b"
# Longest first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_FEED_ROOTS = frozenset({"rss", "rdf", "feed", "channel"})
_HTML_ROOTS = frozenset(
    {"html", "head", "body", "meta", "title", "link", "script", "style", "div", "p", "table",
     "span", "a", "br", "h1", "h2", "h3", "center", "font", "form", "iframe", "noscript"}
)  # fmt: skip
_XML_DECL = re.compile(r"\A<\?xml[^>]*\?>")
_ROOT_RE = re.compile(r"<([A-Za-z_][\w.:-]*)")
# Whitespace and comments before `<?xml`: expat rejects the declaration unless it comes first
# (the WordPress "blank line" bug, rome jira_issue1.xml). Only the head is searched.
_JUNK_BEFORE_DECL = re.compile(rb"\A(?:\s|<!--.*?-->)+(?=<\?xml[\s?])", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: DocKind
    content: bytes  # gunzipped, junk before the XML declaration removed
    root: str | None  # local name of the first element, lower case
    warnings: tuple[str, ...] = ()
    # the charset `content` is in by the HTTP Content-Type (UTF-8 once transcoded), if any
    charset: str | None = None


def sniff(content: bytes, content_type: str | None) -> Sniffed:
    """Classify `content`; raise `Unreadable` for an empty body or a broken gzip stream."""
    warnings: list[str] = []
    if not content.strip():
        raise Unreadable(
            "empty_body",
            "the server answered with an empty body; check the URL or try again later",
        )
    if content.startswith(_GZIP_MAGIC):
        content = gunzip(content)
        warnings.append("gzip_body: gzip bytes without Content-Encoding were decompressed")
        if not content.strip():
            raise Unreadable("empty_body", "the gzip-compressed body is empty")

    content, transcoded = _utf16_without_bom(content)
    if transcoded:
        warnings.append(f"encoding_override: {transcoded} without a byte order mark, read as such")
    text = _head_text(content)
    bom = _BOMS[0][0] if content.startswith(_BOMS[0][0]) else b""
    head = content[len(bom) : _SNIFF_BYTES]
    stripped = _JUNK_BEFORE_DECL.sub(b"", head, count=1)
    if len(stripped) != len(head):
        content = bom + stripped + content[_SNIFF_BYTES:]
        warnings.append("leading_junk: text before the XML declaration was removed")

    kind, root = _classify(text)
    if kind == "unknown":
        media = media_type(content_type)
        if "html" in media:
            kind = "html"
        elif media.endswith("json"):
            kind = "json"
    return Sniffed(
        kind=kind,
        content=content,
        root=root,
        warnings=tuple(warnings),
        charset="utf-8" if transcoded else charset(content_type),
    )


def gunzip(content: bytes, limit: int = MAX_DECODED_BYTES) -> bytes:
    """Decompress gzip member(s), refusing to produce more than `limit` bytes."""
    out: list[bytes] = []
    size = 0
    data = content
    try:
        while data.startswith(_GZIP_MAGIC):
            d = zlib.decompressobj(wbits=31)
            chunk = d.decompress(data, limit - size + 1)
            size += len(chunk)
            out.append(chunk)
            if size > limit:
                raise Unreadable(
                    "parse_error",
                    f"the gzip-compressed body decodes to more than {limit // 2**20} MiB; "
                    "this looks like a compression bomb, not a feed",
                )
            if not d.eof:
                raise Unreadable("parse_error", "the gzip-compressed body is truncated")
            data = d.unused_data
    except zlib.error as e:
        raise Unreadable(
            "parse_error", f"the body looks gzip-compressed but is corrupt: {e}"
        ) from e
    return b"".join(out)


def media_type(content_type: str | None) -> str:
    """`text/html; charset=utf-8` -> `text/html`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, if any."""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip(" \"'"):
            return value.strip(" \"'")
    return None


def _utf16_without_bom(content: bytes) -> tuple[bytes, str | None]:
    """UTF-16/32 markup without a BOM -> UTF-8; expat cannot guess it (simplepie fixtures)."""
    if any(content.startswith(bom) for bom, _ in _BOMS):
        return content, None
    probe = content[:4]
    codec = {
        b"\x00\x00\x00<": "utf-32-be",
        b"<\x00\x00\x00": "utf-32-le",
    }.get(probe) or {b"\x00<": "utf-16-be", b"<\x00": "utf-16-le"}.get(probe[:2])
    if codec is None:
        return content, None
    try:
        text = content.decode(codec)
    except UnicodeDecodeError:
        return content, None
    # The declaration (if any) names the old encoding; drop it, UTF-8 is the XML default.
    text = _XML_DECL.sub("", text, count=1)
    return text.encode("utf-8"), codec


def _head_text(content: bytes) -> str:
    """The first few KiB as text, good enough to read markup names (not for content)."""
    head = content[:_SNIFF_BYTES]
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :].decode(codec, errors="ignore")
    # UTF-16/32 without a BOM: NUL bytes beside the ASCII of the markup.
    probe = head[:64]
    if b"\x00" in probe:
        if probe.startswith(b"\x00\x00\x00"):
            return head.decode("utf-32-be", errors="ignore")
        if probe[1:4] == b"\x00\x00\x00":
            return head.decode("utf-32-le", errors="ignore")
        if probe[0:1] == b"\x00":
            return head.decode("utf-16-be", errors="ignore")
        return head.decode("utf-16-le", errors="ignore")
    # Latin-1 never fails and keeps ASCII markup intact in every ASCII-compatible charset.
    return head.decode("latin-1")


def _classify(text: str) -> tuple[DocKind, str | None]:
    pos = 0
    doctype_html = False
    n = len(text)
    while pos < n:
        while pos < n and text[pos] in " \t\r\n\f\ufeff\x00":
            pos += 1
        if text.startswith("<?", pos):
            end = text.find("?>", pos)
            pos = n if end < 0 else end + 2
        elif text.startswith("<!--", pos):
            end = text.find("-->", pos)
            pos = n if end < 0 else end + 3
        elif text[pos : pos + 9].upper() == "<!DOCTYPE":
            bracket, close = text.find("[", pos), text.find(">", pos)
            if 0 <= bracket < close:  # internal subset: skip to `]>`
                close = text.find("]", bracket)
                close = text.find(">", close) if close >= 0 else -1
            doctype_html = "html" in text[pos : pos + 40].lower()
            pos = n if close < 0 else close + 1
        else:
            break
    rest = text[pos:]
    if rest[:1] in ("{", "["):
        return "json", None
    match = _ROOT_RE.match(rest)
    if match is None:
        return ("html", None) if doctype_html else ("unknown", None)
    root = match.group(1).rsplit(":", 1)[-1].lower()
    if root in _FEED_ROOTS:
        return "feed", root
    if doctype_html or root in _HTML_ROOTS:
        return "html", root
    return "xml", root
