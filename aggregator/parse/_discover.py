"""Parse stage helper, feed discovery: HTML bytes + the page URL -> candidate feed URLs.

Reads the `<link rel="alternate" type="application/rss+xml | atom+xml | feed+json">` tags a
site advertises (and `<base href>` for resolving them), and names the common feed paths
(/feed, /rss, ...) worth probing. Pure: nothing here fetches; the pipeline probes the
candidates with the fetch stage.
Must not import the network, other stages, or anything outside `aggregator.parse`.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from lxml import etree

# Feed links live in <head>; reading the first 512 KiB is plenty and bounds the work.
MAX_DISCOVERY_BYTES = 512 * 1024
FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
        "application/json",  # JSON Feed 1.0 sites often advertise plain JSON
        "application/rdf+xml",
    }
)
# Probed in this order besides the advertised feeds (keep in sync with docs/editors.md).
COMMON_FEED_PATHS = ("/feed", "/rss", "/feed.xml", "/rss.xml", "/atom.xml", "/index.xml")


class _LinkCollector:
    """An lxml parser target that keeps the attributes of <link> and <base> tags only."""

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []
        self.base: str | None = None

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        name = tag.lower()
        if name == "link":
            self.links.append({k.lower(): v for k, v in attrib.items()})
        elif name == "base" and self.base is None:
            self.base = attrib.get("href")

    def end(self, tag: str) -> None:
        pass

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass


def discover_feeds(content: bytes, url: str) -> tuple[str, ...]:
    """The absolute http(s) URLs of the feeds an HTML page advertises, in page order."""
    collector = _LinkCollector()
    parser = etree.HTMLParser(target=collector, recover=True, no_network=True)
    try:
        parser.feed(content[:MAX_DISCOVERY_BYTES])
        parser.close()
    except etree.Error:
        pass  # whatever was collected before lxml gave up is still good
    base = url
    if collector.base:
        candidate = urljoin(url, collector.base.strip())
        if _is_http(candidate):
            base = candidate
    found: list[str] = []
    for attrs in collector.links:
        rel = attrs.get("rel", "").lower().split()
        ctype = attrs.get("type", "").split(";")[0].strip().lower()
        href = attrs.get("href", "").strip()
        if "alternate" not in rel or ctype not in FEED_TYPES or not href:
            continue
        absolute = urljoin(base, href)
        if _is_http(absolute) and absolute not in found:
            found.append(absolute)
    return tuple(found)


def common_feed_urls(url: str) -> tuple[str, ...]:
    """The site's common feed locations (/feed, /rss, ...), from the root of `url`'s host."""
    if not _is_http(url):
        return ()
    return tuple(urljoin(url, path) for path in COMMON_FEED_PATHS)


def _is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
