"""Text -> the features clustering compares: content words, names, numbers, years.

Pure and deterministic. Imports only the standard library.

Why these: two outlets rewriting one event keep its *names* (people, places), its *numbers*
(22.5 years, $175,000, 236-181) and a few rare content words, while the wording around them
changes. Stop words carry nothing; a light suffix strip makes "fired" meet "fires".
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

LEAD_CHARS = 400  # how much of an item's text joins its title; keep in sync with docs/clustering.md

# AP-style abbreviations that outlets use for the same place ("W.Va." and "West Virginia").
_PLACES = {
    "ala.": "alabama",
    "ariz.": "arizona",
    "ark.": "arkansas",
    "calif.": "california",
    "colo.": "colorado",
    "conn.": "connecticut",
    "del.": "delaware",
    "fla.": "florida",
    "ga.": "georgia",
    "ill.": "illinois",
    "ind.": "indiana",
    "kan.": "kansas",
    "ky.": "kentucky",
    "la.": "louisiana",
    "md.": "maryland",
    "mass.": "massachusetts",
    "mich.": "michigan",
    "minn.": "minnesota",
    "miss.": "mississippi",
    "mo.": "missouri",
    "mont.": "montana",
    "neb.": "nebraska",
    "nev.": "nevada",
    "n.h.": "new hampshire",
    "n.j.": "new jersey",
    "n.m.": "new mexico",
    "n.y.": "new york",
    "n.c.": "north carolina",
    "n.d.": "north dakota",
    "okla.": "oklahoma",
    "ore.": "oregon",
    "pa.": "pennsylvania",
    "r.i.": "rhode island",
    "s.c.": "south carolina",
    "s.d.": "south dakota",
    "tenn.": "tennessee",
    "va.": "virginia",
    "vt.": "vermont",
    "wash.": "washington",
    "w.va.": "west virginia",
    "wis.": "wisconsin",
    "wyo.": "wyoming",
    "u.s.": "us",
    "u.k.": "uk",
    "d.c.": "dc",
}
_PLACE_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(_PLACES, key=len, reverse=True)) + r")",
    re.IGNORECASE,
)

_STATES = sorted({v for v in _PLACES.values() if v not in ("us", "uk", "dc")} | {
    "alaska", "hawaii", "idaho", "iowa", "maine", "ohio", "texas", "utah", "new york",
}, key=len, reverse=True)  # fmt: skip
_STATE_RE = re.compile(r"\b(" + "|".join(re.escape(s) for s in _STATES) + r")\b", re.IGNORECASE)

_STOP_WORDS = """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours out over own same she should so some such than that the their theirs them
    then there these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your yours says said say told tells
    new news latest breaking update updates live watch video photos read full report reports
    reported according after week day today yesterday tomorrow monday tuesday wednesday
    thursday friday saturday sunday mon tue wed thu fri sat sun january february march april
    may june july august september october november december jan feb mar apr jun jul aug sep
    sept oct nov dec one two three four five six seven eight nine ten first second last year
    years time times people man woman men women get got make made take took us"""
_STOP = frozenset(_STOP_WORDS.split())
# Title words that say how a page is presented, not what happened.
_WORD = re.compile(r"[^\W_]+(?:[.'\u2019][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(
    r"(?<![\w.])\$?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s*(k|thousand|million|billion|m|bn)\b)?(%)?",
    re.IGNORECASE,
)
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "bn": 1e9, "billion": 1e9}
_SUFFIXES = ("ing", "ed", "es", "s", "e")


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light suffix strip ("fired", "fires", "fire" -> "fir"); words under 4 letters kept."""
    if len(word) < 4 or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                continue
            return word[: -len(suffix)]
    return word


def normalize_text(text: str) -> str:
    """NFKC, straight quotes, and AP place abbreviations spelled out."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return _PLACE_RE.sub(lambda m: " " + _PLACES[m.group(1).lower()].title() + " ", text)


def numbers(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(numbers, years) written in `text`. Years are 1900-2099 without a decimal part;
    "$175K" and "175,000" are the same number; 1-digit numbers say too little to count."""
    found: set[str] = set()
    years: set[str] = set()
    for m in _NUMBER.finditer(text):
        raw, scale, _percent = m.group(1), m.group(2), m.group(3)
        value = float(raw.replace(",", ""))
        if scale:
            value *= _SCALE[scale.lower()]
        if not scale and "," not in raw and "." not in raw and 1900 <= value <= 2099:
            years.add(raw)
            continue
        if value < 10 and not scale:
            continue
        found.add(f"{value:g}")
    return frozenset(found), frozenset(years)


def _strip_possessive(word: str) -> str:
    lower = word.lower()
    return word[:-2] if lower.endswith(("'s", "\u2019s")) else word


def content_tokens(text: str) -> list[str]:
    """Lower-cased, stemmed content words, in order (stop words and 1-letter words out)."""
    out = []
    for raw in _WORD.findall(text):
        word = _strip_possessive(raw).replace("'", "").replace(".", "").lower()
        if len(word) < 2 or word in _STOP or word.isdigit():
            continue
        out.append(stem(word))
    return out


def names(text: str, also: str = "") -> frozenset[str]:
    """Capitalised words that are not stop words: people, places, organisations.

    A sentence's first word counts only if it is capitalised at least twice in `text` and
    never written in lower case there ("Signature Bank ... Signature said"), so "Former" or
    "Police" opening a sentence is not taken for a name. In a Title Case headline every word
    is capitalised, so callers pass body text (or a headline in sentence case); `also` (a
    Title Case headline) only counts towards "capitalised twice"."""
    found: set[str] = set()
    initial: Counter[str] = Counter()
    capitalised: Counter[str] = Counter()
    lower: set[str] = set()
    for raw in _WORD.findall(also):
        word = _strip_possessive(raw).replace(".", "")
        if word[:1].isupper():
            capitalised[word.lower()] += 1
    for sentence in re.split(r"(?<=[.!?])\s+|\n|\s[-\u2014\u2013]\s", text):
        tokens = _WORD.findall(sentence)
        for i, raw in enumerate(tokens):
            word = _strip_possessive(raw).replace(".", "")
            key = word.lower()
            if key in _STOP or len(word) < 2:
                continue
            if not word[:1].isupper():
                lower.add(key)
                continue
            capitalised[key] += 1
            if i == 0:
                initial[key] += 1
            else:
                found.add(key)
    for key in initial:
        if capitalised[key] >= 2 and key not in lower:
            found.add(key)
    return frozenset(stem(k) for k in found)


def is_title_case(title: str) -> bool:
    """Most words capitalised: a Title Case headline, whose capitals say nothing."""
    ws = [w for w in _WORD.findall(title) if w[:1].isalpha() and w.lower() not in _STOP]
    if len(ws) < 3:
        return False
    return sum(1 for w in ws if w[:1].isupper()) / len(ws) > 0.6


@dataclass(frozen=True, slots=True)
class Features:
    """What clustering knows of one item."""

    title: frozenset[str]  # content tokens of the title
    doc: frozenset[str]  # content tokens of title + the first LEAD_CHARS of the text
    names: frozenset[str]  # proper names (stemmed, lower case)
    numbers: frozenset[str]
    years: frozenset[str]
    states: frozenset[str] = frozenset()  # US states named ("west virginia", "maine")


def states(text: str) -> frozenset[str]:
    """The US states `text` names (after abbreviations are spelled out); "West Virginia"
    is not also "Virginia"."""
    return frozenset(m.group(1).lower() for m in _STATE_RE.finditer(text))


def extract_features(title: str, text: str, lead_chars: int = LEAD_CHARS) -> Features:
    title = normalize_text(title or "")
    lead = normalize_text((text or "")[:lead_chars])
    title_tokens = frozenset(content_tokens(title))
    doc = title_tokens | frozenset(content_tokens(lead))
    title_case = is_title_case(title)
    found_names = names(lead, also=title) if title_case else names(f"{title}\n{lead}")
    nums, years = numbers(f"{title}\n{lead}")
    return Features(
        title=title_tokens,
        doc=doc,
        names=frozenset(n for n in found_names if n in doc),
        numbers=nums,
        years=years,
        states=states(f"{title}\n{lead}"),
    )
