"""Parse stage, automatic listing detection: an HTML page without selectors -> entries.

Input: a cleaned lxml tree (a `_tree.Document`, see `_tree.load_tree`) and the base URL.
Output: one `Entry` per article teaser the page repeats (news topic pages, blog indexes, home
pages), or an empty list when the page has no such listing (a single article, a login page).

How: headline-like links outside navigation are grouped by the structural signature of the
markup around them (tag names and classes of the nearest ancestors); each group that repeats
gets a container per link (the largest ancestor holding no other link of the group) and a
score from its size and how much it looks like a list of teasers (headings, teaser text,
dates, same-site article URLs). The dominant group(s) become the entries.
The tree is lxml's, read through `_tree`'s helpers so that the entries are exactly those the
bs4 version of this module found; elements, not their `id()`, are the keys of every set and
dict (an lxml element's Python proxy, and so its id, lives only as long as a reference to it).
Must not import the network, other stages, or anything outside `aggregator.types`
and `aggregator.parse`.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from urllib.parse import urlsplit

from aggregator.parse._dates import find_date
from aggregator.parse._html import absolute
from aggregator.parse._tree import (
    Document,
    Element,
    classes,
    is_element,
    tokens,
    tree_date,
    tree_text,
)
from aggregator.types import Entry

MIN_ITEMS = 3
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_NAV_TAGS = frozenset({"nav", "aside", "form", "menu", "dialog", "select", "button"})
_PAGE_CHROME = frozenset({"header", "footer"})  # chrome only when not inside an article/main
_NAV_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar",
     "dialog", "tablist"}
)  # fmt: skip
# Class/id tokens of page chrome and of link lists that are not the page's own listing.
_CHROME_TOKEN = re.compile(
    r"^(?:site-?header|masthead|header|topbar|top-bar|breadcrumbs?|skip-?links?|"
    r"(?:nav|menu|footer|sidebar|share|sharing|social|cookie|consent|login|signin|"
    r"subscribe|newsletter|comments?|pagination|pager|widget|tagcloud|tag-cloud|"
    r"trending|most-?popular|most-?read|related|recommended|advert|sponsor|promo)\w*|"
    r"\w*[-_](?:nav|navigation|menu|footer|sidebar|widget|share|social|comments))$",
    re.IGNORECASE,
)
_TITLE_TOKEN = re.compile(r"title|headline|heading|hed\b", re.IGNORECASE)
_TEASER_TOKEN = re.compile(
    r"summary|excerpt|teaser|dek\b|desc|standfirst|lead|intro|abstract|subtitle|snippet|"
    r"entry-content|post-content|text",
    re.IGNORECASE,
)
# Classes that differ between items of one list: states, modifiers, and per-post classes
# (WordPress puts `post-1984 category-opinion format-link` on each article).
_STATE_CLASS = re.compile(
    r"^(?:first|last|odd|even|active|current|selected|featured|hidden|visible|hentry|"
    r"(?:is|has|js|category|tag|format|status|type|author|post|entry|sticky)[-_].*|.*--.*|.*\d.*)$",
    re.IGNORECASE,
)
_NOT_HEADLINE = re.compile(
    r"^(?:read (?:more|the rest|full)|continue reading|more|weiterlesen|mehr|lire la suite|"
    r"view (?:all|more)|see (?:all|more)|load more|show more|next|previous|older|newer|"
    r"(?:leave a |add a |\d+ |no )?(?:comments?|repl(?:y|ies))|permalink|share|"
    r"log ?in|sign ?(?:in|up)|"
    r"subscribe|hinterlasse|kommentar|\d+ kommentare?)\b",
    re.IGNORECASE,
)
_BAD_PATH = re.compile(
    r"/(?:tags?|categor(?:y|ies)|topics?|authors?|users?|profile|login|log-in|signin|sign-in|"
    r"signup|register|account|subscribe|search|feed|rss|share|wp-login\.php|cart|contact|"
    r"about|impressum|privacy|datenschutz|terms)(?:/|\.|$)",
    re.IGNORECASE,
)
_BAD_FRAGMENT = re.compile(r"^(?:respond|comments?|comment-\d+|disqus_thread|reply)$", re.I)
_SOCIAL_HOSTS = re.compile(
    r"(?:^|\.)(?:facebook|twitter|x|linkedin|instagram|pinterest|whatsapp|t|tiktok|"
    r"mastodon|threads)\.(?:com|me|net)$",
    re.IGNORECASE,
)
_BLOCKS = frozenset(
    {"div", "li", "td", "th", "article", "section", "header", "main", "body", "ul", "ol",
     "h1", "h2", "h3", "h4", "h5", "h6", "figure", "figcaption"}
)  # fmt: skip
_META_TOKEN = re.compile(
    r"byline|author|meta|date|time|credit|tags?\b|categor|caption|kicker|label|rubric",
    re.IGNORECASE,
)
_BYLINE = re.compile(r"^(?:by|von|par)\s", re.IGNORECASE)


@dataclass(slots=True)
class _Candidate:
    anchor: Element
    link: str
    title: str
    order: int
    in_heading: bool
    signature: tuple[str, ...] = ()
    container: Element | None = None

    @property
    def item(self) -> Element:
        """The teaser: its container, or the headline link when it has none."""
        return self.anchor if self.container is None else self.container


@dataclass(slots=True)
class _Group:
    members: list[_Candidate] = field(default_factory=list)
    score: float = 0.0
    entries: list[tuple[_Candidate, Entry]] = field(default_factory=list)


def find_listing(document: Document, base: str, page_url: str) -> list[Entry]:
    """Entries of the page's dominant repeated teaser list(s); [] when there is none."""
    body: Element | Document | None = next(document.iter("body"), None)
    if body is None:
        body = document
    site = _site_domains(document, base, page_url)
    candidates = _candidates(body, base, page_url)
    groups: dict[tuple[str, ...], _Group] = {}
    for cand in candidates:
        groups.setdefault(cand.signature, _Group()).members.append(cand)

    scored: list[_Group] = []
    for group in groups.values():
        if len({c.link for c in group.members}) < MIN_ITEMS:
            continue
        _assign_containers(group.members)
        _score(group, site)
        if group.score > 0:
            scored.append(group)
    if not scored:
        return []
    scored.sort(key=lambda g: g.score, reverse=True)
    best = scored[0].score
    chosen = [g for g in scored if g.score >= 0.35 * best]

    entries, taken = _merge(chosen)
    if _is_single_article(body, taken):
        return []
    return entries


# A block with this much paragraph text outside every teaser is the page's own article.
ARTICLE_TEXT = 2500


def _is_single_article(body: Element | Document, taken: list[Element]) -> bool:
    """True when the page's densest run of paragraphs is outside every teaser we found and
    outweighs them all: an article page with a "related stories" box, not a listing."""
    best: Element | None = None
    best_len = 0
    parents: dict[Element, None] = {}
    for p in body.iterdescendants("p"):
        parent = p.getparent()
        if parent is not None:
            parents[parent] = None
    for parent in parents:
        size = sum(len(tree_text(p)) for p in parent.iterchildren("p"))
        if size > best_len:
            best, best_len = parent, size
    if best is None or best_len < ARTICLE_TEXT:
        return False
    items = set(taken)
    if best in items or any(p in items for p in best.iterancestors()):
        return False  # the dense text is one of the teasers (a blog index with full posts)
    if any(p is best for c in taken for p in c.iterancestors()):
        return False  # the dense text holds the teasers (a flat blog page)
    return best_len > sum(len(tree_text(c)) for c in taken)


def _merge(groups: list[_Group]) -> tuple[list[Entry], list[Element]]:
    """Entries of `groups` (best first) in page order; a lesser group's item that sits
    inside, or around, an item already taken is the same teaser seen twice."""
    links: set[str] = set()
    containers: set[Element] = set()  # the items taken
    around: set[Element] = set()  # every ancestor of a taken headline link
    picked: list[tuple[int, Entry]] = []
    taken: list[Element] = []
    for group in groups:
        fresh: list[tuple[_Candidate, Entry]] = []
        for cand, entry in group.entries:
            if cand.link in links or cand.item in around:
                continue
            if any(p in containers for p in cand.anchor.iterancestors()):
                continue
            fresh.append((cand, entry))
        for cand, entry in fresh:
            links.add(cand.link)
            containers.add(cand.item)
            taken.append(cand.item)
            around.update(cand.anchor.iterancestors())
            picked.append((cand.order, entry))
    picked.sort(key=lambda pair: pair[0])
    return [entry for _, entry in picked], taken


# --- candidates ---------------------------------------------------------------------------


def _candidates(body: Element | Document, base: str, page_url: str) -> list[_Candidate]:
    out: list[_Candidate] = []
    here = {page_url.rstrip("/"), base.rstrip("/")}
    chrome_cache: dict[Element, bool] = {}
    links: dict[str, str | None] = {}  # href -> its article link; pages repeat their hrefs
    anchors = (a for a in body.iterdescendants("a") if a.get("href") is not None)
    for order, a in enumerate(anchors):
        href = a.get("href")
        if href in links:
            link = links[href]
        else:
            link = absolute(href, base)
            if link is not None and (not _article_like(link) or link.rstrip("/") in here):
                link = None
            links[href] = link
        if link is None:
            continue
        heading = _heading_inside(a)
        title = tree_text(heading) if heading is not None else tree_text(a)
        in_heading = heading is not None or _heading_around(a) is not None
        if not _headline_like(title, in_heading) or _in_prose(a, title):
            continue
        if _in_chrome(a, chrome_cache):
            continue
        out.append(_Candidate(a, link, title[:300], order, in_heading, signature=_signature(a)))
    return out


def _article_like(link: str) -> bool:
    parts = urlsplit(link)
    if parts.scheme.lower() not in {"http", "https"}:
        return False
    if _SOCIAL_HOSTS.search(parts.hostname or ""):
        return False
    if _BAD_FRAGMENT.match(parts.fragment):
        return False
    path = parts.path or "/"
    if path == "/" and not parts.query:
        return False  # a home page, not an article
    return not _BAD_PATH.search(path)


def _headline_like(title: str, in_heading: bool) -> bool:
    if not 10 <= len(title) <= 300:
        return False
    words = title.split()
    # Headings may be short ("Landesparteitag 2014"); CJK headlines have no spaces at all.
    if len(words) < (2 if in_heading else 3) and not (len(title) >= 12 and not title.isascii()):
        return False
    if _NOT_HEADLINE.match(title):
        return False
    # A permalink that shows only a date ("Monday, 3 March 2025", "04 Mar 2016") is no title.
    return not (find_date(title) is not None and len(title) < 40)


def _in_prose(a: Element, title: str) -> bool:
    """A link inside running text (a paragraph that says more than the link) is no headline."""
    for node in a.iterancestors():
        if node.tag in ("p", "blockquote", "dd"):
            return len(title) < 0.6 * len(tree_text(node))
        if node.tag in _BLOCKS:
            return False
    return False


def _in_chrome(a: Element, cache: dict[Element, bool]) -> bool:
    path: list[Element] = []
    result = False
    node = a.getparent()
    while node is not None and node.tag != "body":
        cached = cache.get(node)
        if cached is not None:
            result = cached
            break
        path.append(node)
        if _is_chrome(node):
            result = True
            break
        node = node.getparent()
    for seen in path:
        # Everything under a chrome element is chrome; the inverse is also safe to cache.
        cache[seen] = result
    return result


def _is_chrome(node: Element) -> bool:
    if node.tag in _NAV_TAGS:
        return True
    role = (node.get("role") or "").lower()
    if role in _NAV_ROLES:
        return True
    if node.tag in _PAGE_CHROME and next(node.iterancestors("article", "main"), None) is None:
        return True
    names = classes(node)
    ident = node.get("id")
    if ident is not None:
        names.append(ident)
    return any(_CHROME_TOKEN.match(t) for t in names)


def _signature(a: Element) -> tuple[str, ...]:
    parts: list[str] = []
    node: Element | None = a
    level = 0
    while node is not None and node.tag != "body":
        if level < 4:
            kept = sorted(c for c in classes(node) if not _STATE_CLASS.match(c))
            parts.append(node.tag + "." + ".".join(kept))
        else:
            parts.append(node.tag)
        node = node.getparent()
        level += 1
    return tuple(parts)


def _heading_inside(a: Element) -> Element | None:
    return next(a.iterdescendants(*_HEADINGS), None)


def _heading_around(a: Element) -> Element | None:
    for node in a.iterancestors():
        if node.tag in _HEADINGS:
            return node
        if node.tag in ("article", "li", "section", "body"):
            return None
        if any(_TITLE_TOKEN.search(c) for c in classes(node)):
            return node
    return None


# --- containers and scoring ---------------------------------------------------------------


def _assign_containers(members: list[_Candidate]) -> None:
    """Each member's container: its largest ancestor that holds no other member."""
    counts: Counter[Element] = Counter()
    chains: list[list[Element]] = []
    for cand in members:
        chain = [p for p in cand.anchor.iterancestors() if p.tag not in ("body", "html")]
        chains.append(chain)
        counts.update(chain)
    for cand, chain in zip(members, chains, strict=True):
        container: Element = cand.anchor
        for node in chain:
            if counts[node] > 1:
                break
            container = node
        cand.container = container


def _score(group: _Group, site: set[str]) -> None:
    entries: list[tuple[_Candidate, Entry]] = []
    seen: set[str] = set()
    heading = teaser = dated = same_site = long_title = 0
    for cand in group.members:
        if cand.link in seen:
            continue
        seen.add(cand.link)
        nodes = _item_nodes(cand.item, cand.anchor)
        summary = _teaser(nodes, cand.title)
        published_raw, published = _date(nodes, cand.anchor)
        heading += cand.in_heading
        teaser += summary is not None
        dated += published is not None
        same_site += _domain(urlsplit(cand.link).hostname or "") in site
        long_title += len(cand.title.split()) >= 4
        entries.append(
            (
                cand,
                Entry(
                    guid=cand.link,
                    link=cand.link,
                    title=cand.title,
                    summary=html.escape(summary, quote=False) if summary else None,
                    published=published,
                    published_raw=published_raw,
                ),
            )
        )
    n = len(entries)
    if n < MIN_ITEMS:
        return
    quality = 0.5 + heading / n + 0.5 * long_title / n + 0.5 * teaser / n + 0.5 * dated / n
    locality = 0.3 + 0.7 * same_site / n
    group.score = n * quality * locality
    group.entries = entries


def _item_nodes(container: Element, anchor: Element) -> list[Element]:
    """The item's elements: its container, plus the siblings after a bare headline
    (`<dt>` + `<dd>`, `<h2>` + `<p>` in a flat page, a link + its description)."""
    nodes = [container]
    if container.tag not in _HEADINGS and container.tag not in ("dt", "a"):
        return nodes
    for sibling in container.itersiblings():
        if len(nodes) >= 6:
            break
        if not is_element(sibling):
            continue  # a comment, or the placeholder of a dropped tag
        if sibling.tag == container.tag or sibling.tag in _HEADINGS:
            break
        if next(sibling.iterdescendants(*_HEADINGS), None) is not None:
            break
        nodes.append(sibling)
    return nodes


def _date(nodes: list[Element], anchor: Element) -> tuple[str | None, datetime | None]:
    for node in nodes:
        if node is anchor:
            continue
        raw, value = tree_date(node)
        if value is not None:
            return raw, value
    return None, None


def _teaser(nodes: list[Element], title: str) -> str | None:
    for node in nodes:
        found = _teaser_in(node, title)
        if found:
            return found
    return None


def _teaser_in(container: Element, title: str) -> str | None:
    candidates = [container] if container.tag == "p" else []
    candidates.extend(container.iterdescendants("p", "div", "span", "section"))
    for node in candidates:
        names = classes(node)
        if node.tag != "p" and not any(_TEASER_TOKEN.search(c) for c in names):
            continue
        if any(_META_TOKEN.search(c) for c in names):
            continue
        if (
            node.tag != "p"
            and next(node.iterdescendants("p", "div", "h1", "h2", "h3", "h4", "h5", "h6"), None)
            is not None
        ):
            continue  # a wrapper; its paragraphs come next
        text = tree_text(node)
        if len(text) < 25 or len(text.split()) < 5:
            continue
        if text == title or (title in text and len(text) < len(title) + 25):
            continue
        if _BYLINE.match(text) or (len(text) < 60 and find_date(text) is not None):
            continue
        return text[:1000]
    return None


# --- sites --------------------------------------------------------------------------------


def _site_domains(document: Document, base: str, page_url: str) -> set[str]:
    urls = [base, page_url]
    for tag in islice(document.iter("link", "meta"), 400):
        if tag.tag == "link" and "canonical" in tokens(tag.get("rel")):
            urls.append(tag.get("href") or "")
        elif tag.tag == "meta" and tag.get("property") == "og:url":
            urls.append(tag.get("content") or "")
    domains = {_domain(urlsplit(u).hostname or "") for u in urls}
    domains.discard("")
    return domains


def _domain(host: str) -> str:
    """A rough registrable domain: `www.bbc.co.uk` -> `bbc.co.uk`, `a.b.com` -> `b.com`."""
    labels = host.lower().rstrip(".").split(".")
    if (
        len(labels) >= 3
        and len(labels[-1]) == 2
        and labels[-2] in {"co", "com", "org", "net", "ac", "gov", "edu"}
    ):
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])
