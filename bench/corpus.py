"""The benchmark's synthetic corpus: N sources of RSS 2.0, Atom, JSON Feed and listing pages.

Deterministic for a seed: the same N gives the same bytes, so rounds and machines compare.
Titles are built from per-topic phrase lists (so the section rules of the bench config have
something to match), teasers are HTML paragraphs with links and emphasis, and 12% of the
stories are repeated in one to three other sources with a reworded title. Half of the
repeats link the story's own URL with tracking parameters (utm_*, fbclid), as syndicated
and agency stories are (the same canonical URL: an exact duplicate); the other half link a
URL of the repeating outlet's own, as an outlet's rewrite does (only cross-source clustering
can find those). Every link ends in its story's number, the corpus's truth (`story_key`).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape

# (share of sources, kind): the mix of formats in a corpus.
MIX = (("rss", 0.45), ("atom", 0.25), ("json", 0.15), ("page", 0.15))
DUPLICATE_SHARE = 0.12  # of stories, repeated in other sources
ITEMS_PER_SOURCE = 30

TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # topic: (subjects, actions, objects)
    "politics": (
        (
            "The chancellor",
            "Parliament",
            "The opposition leader",
            "Coalition partners",
            "The interior ministry",
            "Regional governors",
            "The election commission",
            "Senators",
        ),
        (
            "backs",
            "rejects",
            "delays a vote on",
            "unveils",
            "defends",
            "calls for a review of",
            "agrees on",
            "clashes over",
        ),
        (
            "the budget plan",
            "the new asylum rules",
            "a pension reform",
            "the defence package",
            "early elections",
            "the coalition treaty",
            "a tax cut for families",
            "the climate law",
        ),
    ),
    "sport": (
        (
            "The national team",
            "Bayern",
            "The defending champions",
            "The coach",
            "The captain",
            "Olympic organisers",
            "The league",
            "A young striker",
        ),
        (
            "wins",
            "loses",
            "signs",
            "confirms",
            "draws in",
            "dominates",
            "withdraws from",
            "prepares for",
        ),
        (
            "the cup final",
            "a record transfer",
            "the qualifier",
            "the derby",
            "the world cup",
            "a new contract",
            "the title race",
            "the relegation battle",
        ),
    ),
    "tech": (
        (
            "A chip maker",
            "The startup",
            "Regulators",
            "Researchers",
            "The software giant",
            "A cloud provider",
            "Open-source developers",
            "The phone maker",
        ),
        (
            "launches",
            "patches",
            "acquires",
            "open-sources",
            "delays",
            "tests",
            "recalls",
            "announces",
        ),
        (
            "a new AI model",
            "the browser update",
            "a data-centre expansion",
            "its smartphone",
            "a security flaw",
            "the encryption standard",
            "a battery breakthrough",
            "the chat app",
        ),
    ),
    "science": (
        (
            "Astronomers",
            "A research team",
            "Climate scientists",
            "Biologists",
            "The space agency",
            "Physicists",
            "Doctors",
            "Geologists",
        ),
        ("discover", "measure", "map", "warn about", "publish", "confirm", "observe", "simulate"),
        (
            "a distant exoplanet",
            "record ocean temperatures",
            "a new antibiotic",
            "the glacier retreat",
            "a rare bird species",
            "the dark matter signal",
            "an earthquake risk",
            "the vaccine trial",
        ),
    ),
    "business": (
        (
            "The central bank",
            "Carmakers",
            "Retailers",
            "The airline",
            "Shareholders",
            "The energy company",
            "Investors",
            "Exporters",
        ),
        ("raise", "cut", "forecast", "report", "warn of", "expect", "hold", "double"),
        (
            "interest rates",
            "quarterly profits",
            "job cuts",
            "higher prices",
            "a merger",
            "record sales",
            "weaker demand",
            "new factories",
        ),
    ),
}
_QUALIFIERS = (
    "", "", "", " after talks", " amid criticism", " this week", " despite protests",
    " in a surprise move", " for the first time", " as costs rise",
)  # fmt: skip
_FILLER = (
    "Officials said the decision followed weeks of negotiation.",
    "Critics argue the timing could hardly be worse.",
    "The announcement was welcomed by industry groups.",
    "Details are expected to be published on Monday.",
    "Analysts expect the move to have wide consequences.",
    "It is the third such step this year.",
    "Local residents reacted with a mix of relief and concern.",
    "The figures were higher than most economists had predicted.",
    "A spokesperson declined to comment on the details.",
    "More reactions are expected in the coming days.",
)
_TRACKING = ("utm_source=rss&utm_medium=feed", "utm_campaign=wire&fbclid=IwAR0x", "at_medium=rss")


@dataclass(frozen=True, slots=True)
class Story:
    topic: str
    title: str
    reworded: str
    url: str
    published: datetime
    teaser: str  # HTML


@dataclass(frozen=True, slots=True)
class Document:
    """One served source: its path on the server, format, bytes and Content-Type."""

    path: str
    kind: str  # rss | atom | json | page
    topic: str
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Corpus:
    documents: tuple[Document, ...]
    items: int
    duplicates: int  # item slots filled with a story another source also carries

    @property
    def size(self) -> int:
        return sum(len(d.body) for d in self.documents)


def _reword(rng: random.Random, title: str) -> str:
    """The same story as another outlet would headline it."""
    words = title.split(" ")
    choice = rng.randrange(3)
    if choice == 0:
        return f"{title.rstrip('.')}, reports say"
    if choice == 1 and len(words) > 4:
        return " ".join(words[:-1]) + " \u2013 update"
    return f"Update: {title}"


_PLACES = (
    "Berlin", "Hamburg", "Munich", "Cologne", "Vienna", "Zurich", "Paris", "Lyon", "Madrid",
    "Lisbon", "Rome", "Milan", "Warsaw", "Prague", "Budapest", "Oslo", "Stockholm",
    "Copenhagen", "Helsinki", "Dublin", "London", "Leeds", "Glasgow", "Brussels", "Antwerp",
    "Amsterdam", "Rotterdam", "Athens", "Sofia", "Bucharest", "Zagreb", "Ljubljana", "Riga",
    "Vilnius", "Tallinn", "Bratislava", "Krakow", "Porto", "Seville", "Naples", "Turin",
    "Geneva", "Basel", "Graz", "Leipzig", "Dresden", "Bremen", "Hanover", "Stuttgart",
)  # fmt: skip
_SYLLABLES = (
    "ka", "lo", "mi", "ne", "ra", "su", "ti", "vo", "ze", "pa", "do", "ge", "ba", "ri", "fe",
    "ho", "ju", "ly", "mo", "nu", "po", "qui", "sa", "te", "ul", "ve", "wi", "xa", "yo", "zu",
)  # fmt: skip
_KINDS = ("Group", "Act", "Project", "Holdings", "Initiative", "Fund", "Valley", "Report")


def _name(rng: random.Random) -> str:
    first = "".join(rng.choice(_SYLLABLES) for _ in range(2)).title()
    last = "".join(rng.choice(_SYLLABLES) for _ in range(3)).title()
    return f"{first} {last}"


def _teaser(rng: random.Random, topic: str, url: str, title: str, place: str) -> str:
    """A story-specific lead (who, where, a figure) and some newsroom boilerplate."""
    who = _name(rng)
    figure = f"{rng.randint(2, 980)} {rng.choice(('million', 'people', 'percent', 'units'))}"
    lead = (
        f"{title} in {place}, {who} told reporters on "
        f"{rng.choice(('Monday', 'Tuesday', 'Friday'))}; "
        f"the figure under discussion is {figure}."
    )
    filler = rng.sample(_FILLER, k=rng.randint(1, 2))
    link = f'<a href="{escape(url)}">Read more about {escape(topic)} in {escape(place)}</a>'
    first = f"<p><strong>{escape(lead)}</strong> {escape(' '.join(filler))}</p>"
    return f"{first}<p>{link}. <em>{escape(rng.choice(_FILLER))}</em></p>"


def _entity(rng: random.Random) -> str:
    """A proper name only this story is likely to carry (a company, a law, a town): four or
    five syllables, about 25 million words, none as short as a person's last name (three).
    With two to four (7,200 names with the kinds among two-syllable ones, real words among
    them: "July"; three-syllable ones shared with people's names), distinct stories of a
    1,000-source corpus shared names by chance, and the clustering check (`story_key`)
    counted the merges those caused as the clustering's."""
    word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(4, 5))).title()
    return f"{word} {rng.choice(_KINDS)}"


def story_key(link: str) -> str:
    """The generator's truth: an item's story is the number its link ends in, before any
    query (a story's own URL and an outlet's rewrite of it end in the same `-{n}`)."""
    return link.split("?", 1)[0].rsplit("-", 1)[1]


def _story(rng: random.Random, topic: str, n: int, now: datetime) -> Story:
    """One event: the topic's phrases plus names of its own, as distinct news stories are."""
    subjects, actions, objects = TOPICS[topic]
    place = rng.choice(_PLACES)
    entity = _entity(rng)
    title = (
        f"{rng.choice(subjects)} {rng.choice(actions)} {rng.choice(objects)} over {entity}"
        f"{rng.choice(_QUALIFIERS) or ' in ' + place}"
    )
    slug = "-".join(title.lower().replace(",", "").split()[:8])
    url = f"https://news{n % 97}.example.com/{topic}/{now:%Y/%m}/{slug}-{n}"
    published = now - timedelta(minutes=rng.randint(5, 7 * 24 * 60))
    teaser = _teaser(rng, topic, url, title, place)
    return Story(topic, title, _reword(rng, title), url, published, teaser)


def generate_corpus(
    sources: int, now: datetime, *, seed: int = 8, items: int = ITEMS_PER_SOURCE
) -> Corpus:
    """`sources` documents of `items` entries each; 12% of the stories repeated elsewhere."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    kinds = _kinds(rng, sources)
    # Each source's own stories first; then a share of all slots is given to stories of
    # other sources (with a reworded title and a tracked link).
    own = [
        [_story(rng, topics[s % len(topics)], s * 1000 + i, now) for i in range(items)]
        for s in range(sources)
    ]
    slots: list[list[tuple[Story, bool]]] = [[(st, False) for st in stories] for stories in own]
    duplicates = 0
    if sources > 1:
        for _ in range(int(sources * items * DUPLICATE_SHARE)):
            src = rng.randrange(sources)
            story = own[src][rng.randrange(items)]
            dst = rng.randrange(sources - 1)
            dst += dst >= src
            pos = rng.randrange(items)
            if any(other is story for other, _ in slots[dst]):
                continue  # an outlet carries a story once (twice, both peers kept one)
            if not slots[dst][pos][1]:
                duplicates += 1
            slots[dst][pos] = (story, True)
    documents = []
    for s, (kind, entries) in enumerate(zip(kinds, slots, strict=True)):
        topic = topics[s % len(topics)]
        render = _RENDERERS[kind]
        path = f"/s/{s:05d}.{_EXT[kind]}"
        body, ctype = render(rng, s, topic, entries, now)
        documents.append(Document(path, kind, topic, body, ctype))
    return Corpus(tuple(documents), items=sources * items, duplicates=duplicates)


def _kinds(rng: random.Random, sources: int) -> list[str]:
    """Each source's format, in the MIX's shares, shuffled (the first use of `rng`)."""
    kinds: list[str] = []
    for kind, share in MIX:
        kinds += [kind] * round(sources * share)
    kinds = (kinds + ["rss"] * sources)[:sources]
    rng.shuffle(kinds)
    return kinds


def source_paths(sources: int, *, seed: int = 8) -> list[tuple[str, str]]:
    """(path, kind) of every document `generate_corpus` makes for the same arguments, without
    making them: a measured process that only needs the URLs never holds the bodies."""
    kinds = _kinds(random.Random(seed), sources)
    return [(f"/s/{s:05d}.{_EXT[kind]}", kind) for s, kind in enumerate(kinds)]


_EXT = {"rss": "xml", "atom": "atom", "json": "json", "page": "html"}


def _link(story: Story, dup: bool, s: int) -> str:
    if not dup:
        return story.url
    if _rewrite(story, s):  # the outlet's own URL, ending in the story's number
        return f"https://outlet{s}.example.net/{story.topic}/{story.url.rsplit('/', 1)[1]}"
    return f"{story.url}?{_TRACKING[s % len(_TRACKING)]}"


def _rewrite(story: Story, s: int) -> bool:
    """Whether source `s` repeats `story` as a rewrite (a URL of its own) rather than as an
    agency copy (the story's URL with tracking parameters): half of the pairs, fixed."""
    return (int(story_key(story.url)) + s) % 2 == 1


def _guid(story: Story, s: int) -> str:
    return hashlib.sha1(f"{s}:{story.url}".encode()).hexdigest()[:16]


def _rss(
    rng: random.Random, s: int, topic: str, entries: list[tuple[Story, bool]], now: datetime
) -> tuple[bytes, str]:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n'
        f"<title>Outlet {s} \u2013 {topic}</title>\n<link>https://outlet{s}.example.net/</link>\n"
        f"<description>{topic} news from outlet {s}</description>\n"
        f"<lastBuildDate>{format_datetime(now)}</lastBuildDate>\n"
    ]
    for story, dup in entries:
        title = story.reworded if dup else story.title
        out.append(
            f"<item>\n<title>{escape(title, quote=False)}</title>\n"
            f"<link>{escape(_link(story, dup, s), quote=False)}</link>\n"
            f'<guid isPermaLink="false">{_guid(story, s)}</guid>\n'
            f"<pubDate>{format_datetime(story.published)}</pubDate>\n"
            f"<dc:creator>Reporter {rng.randrange(40)}</dc:creator>\n"
            f"<description><![CDATA[{story.teaser}]]></description>\n"
        )
        if rng.random() < 0.3:  # some outlets put the whole article in the feed
            body = "".join(
                f"<p>{escape(rng.choice(_FILLER))} {escape(rng.choice(_FILLER))}</p>"
                for _ in range(8)
            )
            out.append(f"<content:encoded><![CDATA[{story.teaser}{body}]]></content:encoded>\n")
        out.append("</item>\n")
    out.append("</channel>\n</rss>\n")
    return "".join(out).encode(), "application/rss+xml; charset=utf-8"


def _atom(
    rng: random.Random, s: int, topic: str, entries: list[tuple[Story, bool]], now: datetime
) -> tuple[bytes, str]:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n'
        f"<title>Outlet {s} \u2013 {topic}</title>\n"
        f'<link rel="alternate" href="https://outlet{s}.example.net/"/>\n'
        f"<id>urn:outlet:{s}</id>\n<updated>{now.isoformat()}</updated>\n"
    ]
    for story, dup in entries:
        title = story.reworded if dup else story.title
        out.append(
            f'<entry>\n<title type="text">{escape(title, quote=False)}</title>\n'
            f'<link rel="alternate" type="text/html" href="{escape(_link(story, dup, s))}"/>\n'
            f"<id>tag:outlet{s}.example.net,2026:{_guid(story, s)}</id>\n"
            f"<published>{story.published.isoformat()}</published>\n"
            f"<updated>{story.published.isoformat()}</updated>\n"
            f"<author><name>Reporter {rng.randrange(40)}</name></author>\n"
            f'<summary type="html">{escape(story.teaser, quote=False)}</summary>\n</entry>\n'
        )
    out.append("</feed>\n")
    return "".join(out).encode(), "application/atom+xml"


def _json(
    rng: random.Random, s: int, topic: str, entries: list[tuple[Story, bool]], now: datetime
) -> tuple[bytes, str]:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"Outlet {s} \u2013 {topic}",
        "home_page_url": f"https://outlet{s}.example.net/",
        "items": [
            {
                "id": _guid(story, s),
                "url": _link(story, dup, s),
                "title": story.reworded if dup else story.title,
                "content_html": story.teaser,
                "date_published": story.published.isoformat(),
                "authors": [{"name": f"Reporter {rng.randrange(40)}"}],
            }
            for story, dup in entries
        ],
    }
    return json.dumps(doc, ensure_ascii=False).encode(), "application/feed+json"


def _page(
    rng: random.Random, s: int, topic: str, entries: list[tuple[Story, bool]], now: datetime
) -> tuple[bytes, str]:
    nav = "".join(f'<li><a href="/{t}/">{t.title()}</a></li>' for t in TOPICS)
    out = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>Outlet {s}: {topic}</title><link rel="stylesheet" href="/s.css">'
        f"<script>window.dataLayer=[];</script></head>\n<body>\n"
        f'<header class="site-header"><nav class="main-nav"><ul>{nav}</ul></nav></header>\n'
        f'<main><h1>{topic.title()}</h1>\n<div class="teaser-list">\n'
    ]
    for story, dup in entries:
        title = story.reworded if dup else story.title
        out.append(
            '<article class="teaser"><h2 class="teaser__title">'
            f'<a href="{escape(_link(story, dup, s))}">'
            f"{escape(title)}</a></h2>\n"
            f'<time datetime="{story.published.isoformat()}">{story.published:%d %B %Y}</time>\n'
            f'<div class="teaser__text">{story.teaser}</div></article>\n'
        )
    out.append(
        '</div></main>\n<footer class="site-footer"><a href="/imprint">Imprint</a> '
        '<a href="/privacy">Privacy</a></footer>\n</body></html>\n'
    )
    return "".join(out).encode(), "text/html; charset=utf-8"


_RENDERERS = {"rss": _rss, "atom": _atom, "json": _json, "page": _page}


def fixed_now() -> datetime:
    """The corpus's clock: a fixed Monday noon, so two runs generate the same bytes."""
    return datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
