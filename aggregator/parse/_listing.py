"""Parse stage, automatic listing detection: an HTML page without selectors -> entries.

Input: a cleaned soup (see `_html.load_html`) and the base URL. Output: one `Entry` per
article teaser the page repeats (news topic pages, blog indexes, home pages), or an empty
list when the page has no such listing (a single article, a login page).

How: headline-like links outside navigation are grouped by the structural signature of the
markup around them (tag names and classes of the nearest ancestors); each group that repeats
gets a container per link (the largest ancestor holding no other link of the group) and a
score from its size and how much it looks like a list of teasers (headings, teaser text,
dates, same-site article URLs). The dominant group(s) become the entries.
Must not import the network, other stages, or anything outside `aggregator.types`
and `aggregator.parse`.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from bs4 import BeautifulSoup, Tag

from aggregator.parse._dates import find_date
from aggregator.parse._html import absolute, date_of, text_of
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
    anchor: Tag
    link: str
    title: str
    order: int
    in_heading: bool
    signature: tuple[str, ...] = ()
    container: Tag | None = None


@dataclass(slots=True)
class _Group:
    members: list[_Candidate] = field(default_factory=list)
    score: float = 0.0
    entries: list[tuple[_Candidate, Entry]] = field(default_factory=list)


def find_listing(soup: BeautifulSoup, base: str, page_url: str) -> list[Entry]:
    """Entries of the page's dominant repeated teaser list(s); [] when there is none."""
    body = soup.body or soup
    site = _site_domains(soup, base, page_url)
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


def _is_single_article(body: Tag, taken: list[Tag]) -> bool:
    """True when the page's densest run of paragraphs is outside every teaser we found and
    outweighs them all: an article page with a "related stories" box, not a listing."""
    best: Tag | None = None
    best_len = 0
    for parent in {id(p.parent): p.parent for p in body.find_all("p")}.values():
        if not isinstance(parent, Tag):
            continue
        size = sum(len(text_of(p)) for p in parent.find_all("p", recursive=False))
        if size > best_len:
            best, best_len = parent, size
    if best is None or best_len < ARTICLE_TEXT:
        return False
    ids = {id(c) for c in taken}
    if id(best) in ids or any(id(p) in ids for p in best.parents):
        return False  # the dense text is one of the teasers (a blog index with full posts)
    if any(id(p) == id(best) for c in taken for p in c.parents):
        return False  # the dense text holds the teasers (a flat blog page)
    return best_len > sum(len(text_of(c)) for c in taken)


def _merge(groups: list[_Group]) -> tuple[list[Entry], list[Tag]]:
    """Entries of `groups` (best first) in page order; a lesser group's item that sits
    inside, or around, an item already taken is the same teaser seen twice."""
    links: set[str] = set()
    containers: set[int] = set()  # the items taken
    around: set[int] = set()  # every ancestor of a taken headline link
    picked: list[tuple[int, Entry]] = []
    taken: list[Tag] = []
    for group in groups:
        fresh: list[tuple[_Candidate, Entry]] = []
        for cand, entry in group.entries:
            container = cand.container or cand.anchor
            if cand.link in links or id(container) in around:
                continue
            if any(id(p) in containers for p in cand.anchor.parents):
                continue
            fresh.append((cand, entry))
        for cand, entry in fresh:
            links.add(cand.link)
            containers.add(id(cand.container or cand.anchor))
            taken.append(cand.container or cand.anchor)
            around.update(id(p) for p in cand.anchor.parents)
            picked.append((cand.order, entry))
    picked.sort(key=lambda pair: pair[0])
    return [entry for _, entry in picked], taken


# --- candidates ---------------------------------------------------------------------------


def _candidates(body: Tag, base: str, page_url: str) -> list[_Candidate]:
    out: list[_Candidate] = []
    here = {page_url.rstrip("/"), base.rstrip("/")}
    chrome_cache: dict[int, bool] = {}
    for order, a in enumerate(body.find_all("a", href=True)):
        link = absolute(a.get("href"), base)
        if link is None or not _article_like(link) or link.rstrip("/") in here:
            continue
        heading = _heading_inside(a)
        title = text_of(heading) if heading is not None else text_of(a)
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


def _in_prose(a: Tag, title: str) -> bool:
    """A link inside running text (a paragraph that says more than the link) is no headline."""
    for node in a.parents:
        if node.name in ("p", "blockquote", "dd"):
            return len(title) < 0.6 * len(text_of(node))
        if node.name in _BLOCKS:
            return False
    return False


def _in_chrome(a: Tag, cache: dict[int, bool]) -> bool:
    path: list[Tag] = []
    result = False
    node = a.parent
    while isinstance(node, Tag) and node.name not in ("body", "[document]"):
        cached = cache.get(id(node))
        if cached is not None:
            result = cached
            break
        path.append(node)
        if _is_chrome(node):
            result = True
            break
        node = node.parent
    for seen in path:
        # Everything under a chrome element is chrome; the inverse is also safe to cache.
        cache[id(seen)] = result
    return result


def _is_chrome(node: Tag) -> bool:
    if node.name in _NAV_TAGS:
        return True
    role = str(node.get("role") or "").lower()
    if role in _NAV_ROLES:
        return True
    if node.name in _PAGE_CHROME and node.find_parent(("article", "main")) is None:
        return True
    tokens = list(_classes(node))
    ident = node.get("id")
    if isinstance(ident, str):
        tokens.append(ident)
    return any(_CHROME_TOKEN.match(t) for t in tokens)


def _classes(node: Tag) -> list[str]:
    value = node.get("class")
    if isinstance(value, str):
        return value.split()
    return list(value or ())


def _signature(a: Tag) -> tuple[str, ...]:
    parts: list[str] = []
    node: Tag | None = a
    level = 0
    while isinstance(node, Tag) and node.name not in ("body", "[document]"):
        if level < 4:
            classes = sorted(c for c in _classes(node) if not _STATE_CLASS.match(c))
            parts.append(node.name + "." + ".".join(classes))
        else:
            parts.append(node.name)
        node = node.parent
        level += 1
    return tuple(parts)


def _heading_inside(a: Tag) -> Tag | None:
    found = a.find(_HEADINGS)
    return found if isinstance(found, Tag) else None


def _heading_around(a: Tag) -> Tag | None:
    for node in a.parents:
        if node.name in _HEADINGS:
            return node
        if node.name in ("article", "li", "section", "body"):
            return None
        if any(_TITLE_TOKEN.search(c) for c in _classes(node)):
            return node
    return None


# --- containers and scoring ---------------------------------------------------------------


def _assign_containers(members: list[_Candidate]) -> None:
    """Each member's container: its largest ancestor that holds no other member."""
    counts: Counter[int] = Counter()
    chains: list[list[Tag]] = []
    for cand in members:
        chain = [p for p in cand.anchor.parents if p.name not in ("body", "[document]", "html")]
        chains.append(chain)
        counts.update(id(p) for p in chain)
    for cand, chain in zip(members, chains, strict=True):
        container: Tag = cand.anchor
        for node in chain:
            if counts[id(node)] > 1:
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
        container = cand.container or cand.anchor
        nodes = _item_nodes(container, cand.anchor)
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


def _item_nodes(container: Tag, anchor: Tag) -> list[Tag]:
    """The item's elements: its container, plus the siblings after a bare headline
    (`<dt>` + `<dd>`, `<h2>` + `<p>` in a flat page, a link + its description)."""
    nodes = [container]
    if container.name not in _HEADINGS and container.name not in ("dt", "a"):
        return nodes
    sibling = container.next_sibling
    while sibling is not None and len(nodes) < 6:
        if isinstance(sibling, Tag):
            if sibling.name == container.name or sibling.name in _HEADINGS:
                break
            if sibling.find(_HEADINGS) is not None:
                break
            nodes.append(sibling)
        sibling = sibling.next_sibling
    return nodes


def _date(nodes: list[Tag], anchor: Tag) -> tuple[str | None, datetime | None]:
    for node in nodes:
        if node is anchor:
            continue
        raw, value = date_of(node)
        if value is not None:
            return raw, value
    return None, None


def _teaser(nodes: list[Tag], title: str) -> str | None:
    for node in nodes:
        found = _teaser_in(node, title)
        if found:
            return found
    return None


def _teaser_in(container: Tag, title: str) -> str | None:
    candidates = [container] if container.name == "p" else []
    candidates.extend(container.find_all(("p", "div", "span", "section")))
    for node in candidates:
        classes = _classes(node)
        if node.name != "p" and not any(_TEASER_TOKEN.search(c) for c in classes):
            continue
        if any(_META_TOKEN.search(c) for c in classes):
            continue
        if (
            node.find(("p", "div", "h1", "h2", "h3", "h4", "h5", "h6")) is not None
            and node.name != "p"
        ):
            continue  # a wrapper; its paragraphs come next
        text = text_of(node)
        if len(text) < 25 or len(text.split()) < 5:
            continue
        if text == title or (title in text and len(text) < len(title) + 25):
            continue
        if _BYLINE.match(text) or (len(text) < 60 and find_date(text) is not None):
            continue
        return text[:1000]
    return None


# --- sites --------------------------------------------------------------------------------


def _site_domains(soup: BeautifulSoup, base: str, page_url: str) -> set[str]:
    urls = [base, page_url]
    for tag in soup.find_all(("link", "meta"), limit=400):
        rel = tag.get("rel")
        rels = rel if isinstance(rel, list) else str(rel or "").split()
        if tag.name == "link" and "canonical" in rels:
            urls.append(str(tag.get("href") or ""))
        elif tag.name == "meta" and tag.get("property") == "og:url":
            urls.append(str(tag.get("content") or ""))
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
