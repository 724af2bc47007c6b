"""The OPML stage: OPML bytes <-> subscriptions (pure; no files, no network).

    read_opml(data, file)          OPML 1.0/2.0 bytes -> [Subscription], nested folders flattened
    render_opml(sources, ...)      Sources -> OPML 2.0 text

Reading is defensive: the size is capped, lxml never loads a DTD, never resolves an entity
and never touches the network, and a document that declares a DTD is refused outright (OPML
has no use for one; it is how XXE and entity bombs arrive). Every problem is an `OpmlError`
naming the file (and line when known).

Feed sources are written as `type="rss"` outlines; page sources (HTML listings that have no
feed) as `type="link"` outlines with `url`, marked with `aggregator:kind="page"`, so a feed
reader does not mistake them for feeds and a round trip through aggregator keeps them.
Imports only `types` and `exceptions`; never fetch, parse, storage, pipeline or cli.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

from lxml import etree

from aggregator.exceptions import AggregatorError
from aggregator.types import Source, SourceKind

MAX_OPML_BYTES = 5 * 1024 * 1024
# Our own attributes (id, kind, section); a URN, since no document lives at a URL for them.
NS = "urn:aggregator:opml"
_A = f"{{{NS}}}"


class OpmlError(AggregatorError):
    """An OPML file cannot be read (malformed, too large, not OPML, declares a DTD)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One feed (or page) outline, flattened: `folders` are the titles of its parents."""

    url: str
    title: str
    html_url: str | None = None
    kind: SourceKind = "auto"
    folders: tuple[str, ...] = ()
    source_id: str | None = None  # aggregator:id, when the file came from aggregator
    section: str | None = None  # aggregator:section


@dataclass(frozen=True, slots=True)
class OpmlContents:
    title: str | None
    subscriptions: tuple[Subscription, ...]
    skipped: tuple[str, ...]  # why outlines were left out, one line each


def read_opml(data: bytes, file: str = "<opml>") -> OpmlContents:
    """Parse OPML bytes; feed outlines at any depth, in document order."""
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"{file}: {len(data):,} bytes is over the {MAX_OPML_BYTES:,} byte limit")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        line = f":{e.lineno}" if e.lineno else ""
        raise OpmlError(f"{file}{line}: not well-formed XML: {e.msg}") from e
    if root is None:
        raise OpmlError(f"{file}: the file is empty")
    if root.getroottree().docinfo.internalDTD is not None:
        raise OpmlError(
            f"{file}: the file declares a DTD (<!DOCTYPE ... [...]>); OPML needs none, and "
            "entity declarations are refused for safety; remove the DOCTYPE"
        )
    if etree.QName(root).localname.lower() != "opml":
        raise OpmlError(
            f"{file}:{root.sourceline}: the root element is <{etree.QName(root).localname}>, "
            "not <opml>; is this an OPML file?"
        )
    body = _child(root, "body")
    if body is None:
        raise OpmlError(f"{file}: there is no <body> element")
    head = _child(root, "head")
    title_el = _child(head, "title") if head is not None else None
    title = (title_el.text or "").strip() or None if title_el is not None else None
    subs: list[Subscription] = []
    skipped: list[str] = []
    _walk(body, (), subs, skipped, file)
    return OpmlContents(title=title, subscriptions=tuple(subs), skipped=tuple(skipped))


def _child(el: etree._Element, name: str) -> etree._Element | None:
    for child in el:
        if isinstance(child.tag, str) and etree.QName(child).localname.lower() == name:
            return child
    return None


def _attr(el: etree._Element, *names: str) -> str:
    """The first non-empty attribute among `names`, case-insensitively (OPML in the wild)."""
    lowered = {str(k).lower(): str(v) for k, v in el.attrib.items()}
    for name in names:
        value = lowered.get(name.lower(), "").strip()
        if value:
            return value
    return ""


def _walk(
    el: etree._Element,
    folders: tuple[str, ...],
    out: list[Subscription],
    skipped: list[str],
    file: str,
) -> None:
    for child in el:
        if not isinstance(child.tag, str) or etree.QName(child).localname.lower() != "outline":
            continue
        text = _attr(child, "text", "title")
        xml_url = _attr(child, "xmlUrl")
        ours = {k[len(_A) :]: str(v) for k, v in child.attrib.items() if str(k).startswith(_A)}
        page_url = _attr(child, "url") if ours.get("kind") == "page" else ""
        url = xml_url or page_url
        if url:
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                skipped.append(f"{file}:{child.sourceline}: {url!r} is not an http(s) URL")
            else:
                kind: SourceKind = "page" if page_url and not xml_url else "auto"
                if ours.get("kind") in ("feed", "page", "auto"):
                    kind = ours["kind"]  # type: ignore[assignment]
                out.append(
                    Subscription(
                        url=url,
                        title=text or _attr(child, "title") or urlsplit(url).hostname or url,
                        html_url=_attr(child, "htmlUrl") or None,
                        kind=kind,
                        folders=folders,
                        source_id=ours.get("id") or None,
                        section=ours.get("section") or None,
                    )
                )
        elif len(child) == 0 and text:
            skipped.append(f"{file}:{child.sourceline}: {text!r} has no xmlUrl (not a feed)")
        # Folders (categories) are flattened; a feed outline's children are walked too.
        _walk(child, (*folders, text) if not url and text else folders, out, skipped, file)


def render_opml(sources: tuple[Source, ...] | list[Source], title: str, now: datetime) -> str:
    """OPML 2.0 listing every source; page sources as `type="link"` outlines with a note."""
    nsmap = {"aggregator": NS}
    root = etree.Element("opml", nsmap=nsmap, version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = format_datetime(now)
    etree.SubElement(head, "docs").text = "https://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    for s in sources:
        attrs: dict[str, str] = {"text": s.name, "title": s.name}
        if s.kind == "page":
            attrs.update(
                type="link",
                url=s.url,
                htmlUrl=s.url,
                description=(
                    "an HTML page without a feed, read by aggregator's page reader; "
                    "feed readers cannot subscribe to it"
                ),
            )
        else:
            attrs.update(type="rss", xmlUrl=s.url)
        outline = etree.SubElement(body, "outline", attrs)
        outline.set(_A + "id", s.id)
        outline.set(_A + "kind", s.kind)
        if s.section:
            outline.set(_A + "section", s.section)
    text: str = etree.tostring(root, encoding="unicode", pretty_print=True, xml_declaration=False)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text
