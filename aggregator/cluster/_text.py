"""Text -> the features clustering compares: content words, names, numbers, years.

Pure and deterministic. Imports only the standard library and `types` (for pickling).

Why these: two outlets rewriting one event keep its *names* (people, places), its *numbers*
(22.5 years, $175,000, 236-181) and a few rare content words, while the wording around them
changes. Stop words carry nothing; a light suffix strip makes "fired" meet "fires".
"""

from __future__ import annotations

import functools
import operator
import re
import sys
import unicodedata
from dataclasses import dataclass

from aggregator.types import pickled_by_fields

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

# Both searches above try every alternative at every position (IGNORECASE leaves the regex
# engine nothing to skip ahead with), so each runs only after a cheaper test that every text
# they match passes: over the text with A-Z lower-cased (same length, same word boundaries),
# a state's last word as a whole word, an abbreviation's first part as a word and a dot.
# IGNORECASE also takes four other characters for ASCII letters: a text with one of those
# always gets the full search.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Capital I with a dot and dotless i (for i), long s (for s), Kelvin sign (for k).
_CASE_FOLDS = ("\u0130", "\u0131", "\u017f", "\u212a")
_WORD_RUN = re.compile(r"\w+")
_STATE_LAST_WORDS = frozenset(s.split()[-1] for s in _STATES)
_PLACE_FIRST_PARTS = frozenset(k.split(".")[0] + "." for k in _PLACES)


def _ends_of(parts: frozenset[str]) -> str:
    # lookbehinds must be fixed-width: one per length
    by_length: dict[int, list[str]] = {}
    for part in sorted(parts):
        by_length.setdefault(len(part), []).append(re.escape(part))
    return "|".join(f"(?<=(?<!\\w)(?:{'|'.join(same)}))" for _, same in sorted(by_length.items()))


# Whether one of _PLACE_FIRST_PARTS is in the text as a whole word and its dot (a word
# character neither before it nor, being a dot, after it): what findall(r"\w+\.") over the
# text would find. This search starts with a literal, so the regex engine skips from dot to
# dot instead of trying every position.
_PLACE_HINT = re.compile(r"\.(?:" + _ends_of(_PLACE_FIRST_PARTS) + ")")


def _ascii_lower(text: str) -> str | None:
    """`text` with A-Z lower-cased, or None when it holds a character in _CASE_FOLDS."""
    if text.isascii():
        return text.lower()
    if any(c in text for c in _CASE_FOLDS):
        return None
    return text.translate(_ASCII_LOWER)


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
# A number not inside a word or after a dot: its first digit, then the rest of "175,000" or
# "22.5", then a scale and a percent sign. Written digit first (issue 8): the regex engine then
# skips ahead to the next digit, where `(?<![\w.])\$?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)...`, as
# it was, tried its look-behind at every character of a text (about 10 us a text, 4 now). The
# same matches: the "$" it allowed before the digits was never part of a group, and where it
# let a match start at "$" the same digits match from the digit on (a "$" is not `[\w.]`);
# `test_numbers_match_as_the_old_pattern_did` compares the two.
_NUMBER = re.compile(
    r"(\d(?<![\w.]\d)(?:\d{0,2}(?:,\d{3})+|\d*(?:\.\d+)?))"
    r"(?:\s*(k|thousand|million|billion|m|bn)\b)?(%)?",
    re.IGNORECASE,
)
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "bn": 1e9, "billion": 1e9}
_SUFFIXES = ("ing", "ed", "es", "s", "e")


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light suffix strip ("fired", "fires", "fire" -> "fir"); words under 4 letters kept.
    Interned: equal tokens are one object, so comparing two items' sets rarely reads them."""
    return sys.intern(_stem(word))


def _stem(word: str) -> str:
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
    if "." not in text:
        return text  # no abbreviation: each ends with a dot (most headlines)
    lower = _ascii_lower(text)
    if lower is not None and _PLACE_HINT.search(lower) is None:
        return text  # no abbreviation (the usual case)
    return _PLACE_RE.sub(_spell_out, text)


def _spell_out(m: re.Match[str]) -> str:
    # The pattern is case-insensitive, so a dotless i (U+0131) matches "ill." while its
    # .lower() is no key: such a match stays as written.
    place = _PLACES.get(m.group(1).lower())
    return m.group(0) if place is None else " " + place.title() + " "


def numbers(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(numbers, years) written in `text`. Years are 1900-2099 without a decimal part;
    "$175K" and "175,000" are the same number; 1-digit numbers say too little to count."""
    found: set[str] = set()
    years: set[str] = set()
    for raw, scale, _percent in _NUMBER.findall(text):  # "" for a group that did not match
        year, number = _number(raw, scale)
        if year:
            years.add(year)
        elif number:
            found.add(number)
    return frozenset(found), frozenset(years)


@functools.lru_cache(maxsize=1 << 14)
def _number(raw: str, scale: str) -> tuple[str, str]:
    """(year, "") or ("", number) or ("", "") (not counted) of one match of _NUMBER."""
    value = float(raw.replace(",", ""))
    if scale:
        value *= _SCALE[scale.lower()]
    if not scale and "," not in raw and "." not in raw and 1900 <= value <= 2099:
        return raw, ""
    if value < 10 and not scale:
        return "", ""
    return "", f"{value:g}"


def _strip_possessive(word: str) -> str:
    lower = word.lower()
    return word[:-2] if lower.endswith(("'s", "\u2019s")) else word


_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n|\s[-\u2014\u2013]\s")
# One scan of a text: its _WORD words in order, and between them its _SENTENCE_BREAK breaks.
# A break is whitespace (and a dash) and a word holds none, so the words are `_WORD.findall`'s
# and a break falls between two words exactly where `_SENTENCE_BREAK.split` puts one.
_SCAN = re.compile(_SENTENCE_BREAK.pattern + "|" + _WORD.pattern)
_PARTS = re.compile(r"[.'\u2019]")
_STATE_HINT = operator.itemgetter(5)

# What the features need of one scanned word (_BREAK: a sentence break), worked out once per
# distinct word (news text repeats its words):
#   content       the word as `content_tokens` keeps it, "" when dropped
#   name          (lower case, capitalised) for `names`; None for a stop word or one letter
#   also          its lower case when capitalised, for `names`' `also`
#   title_word    counts in `is_title_case` (a letter first, not a stop word)
#   title_upper   ... and capitalised
#   state_hint    a `states` match may lie in it (see `_state_hint`)
_Token = tuple[str, tuple[str, bool] | None, str | None, bool, bool, bool]
_BREAK: _Token = ("", None, None, False, False, False)  # a sentence break: no word at all


@functools.lru_cache(maxsize=1 << 17)
def _token(raw: str) -> _Token:
    if raw[0].isspace():  # a word starts with a letter or digit, a break with whitespace
        return _BREAK
    return (
        _content_word(raw),
        _name_word(raw),
        _also_word(raw),
        raw[:1].isalpha() and raw.lower() not in _STOP,
        raw[:1].isalpha() and raw.lower() not in _STOP and raw[:1].isupper(),
        _state_hint(raw),
    )


def _tokens(text: str) -> list[_Token]:
    return list(map(_token, _SCAN.findall(text)))


def _content_word(raw: str) -> str:
    """One word as `content_tokens` keeps it, or "" when it is dropped."""
    word = _strip_possessive(raw).replace("'", "").replace(".", "").lower()
    if len(word) < 2 or word in _STOP or word.isdigit():
        return ""
    return stem(word)


def _name_word(raw: str) -> tuple[str, bool] | None:
    """(lower case, capitalised) of one word for `names`; None for a stop word or one letter."""
    word = _strip_possessive(raw).replace(".", "")
    key = word.lower()
    if key in _STOP or len(word) < 2:
        return None
    return key, word[:1].isupper()


def _also_word(raw: str) -> str | None:
    word = _strip_possessive(raw).replace(".", "")
    return word.lower() if word[:1].isupper() else None


def _state_hint(raw: str) -> bool:
    """False when `states`' own first test cannot pass because of this word: that test looks
    for a state's last word as a whole word (bounded by non-word characters), which can only
    be one of this word's parts between dots and apostrophes, and always passes on a
    _CASE_FOLDS character. A text none of whose words hints names no state."""
    if any(c in raw for c in _CASE_FOLDS):
        return True
    return not _STATE_LAST_WORDS.isdisjoint(_PARTS.split(raw.translate(_ASCII_LOWER)))


def content_tokens(text: str) -> list[str]:
    """Lower-cased, stemmed content words, in order (stop words and 1-letter words out)."""
    return _content_tokens(_tokens(text))


def _content_tokens(tokens: list[_Token]) -> list[str]:
    return [t[0] for t in tokens if t[0]]


def names(text: str, also: str = "") -> frozenset[str]:
    """Capitalised words that are not stop words: people, places, organisations.

    A sentence's first word counts only if it is capitalised at least twice in `text` and
    never written in lower case there ("Signature Bank ... Signature said"), so "Former" or
    "Police" opening a sentence is not taken for a name. In a Title Case headline every word
    is capitalised, so callers pass body text (or a headline in sentence case); `also` (a
    Title Case headline) only counts towards "capitalised twice"."""
    return _names(_tokens(text), _tokens(also))


def _names(tokens: list[_Token], also: list[_Token]) -> frozenset[str]:
    """`names` of scanned text."""
    found: set[str] = set()
    initial: dict[str, None] = {}  # in the order found, as the sets built from them
    capitalised: dict[str, int] = {}
    lower: set[str] = set()
    for t in also:
        if (key := t[2]) is not None:
            capitalised[key] = capitalised.get(key, 0) + 1
    first = True
    for t in tokens:
        if t is _BREAK:
            first = True
            continue
        info = t[1]
        if info is None:
            first = False
            continue
        key, upper = info
        if not upper:
            lower.add(key)
        else:
            capitalised[key] = capitalised.get(key, 0) + 1
            if first:
                initial[key] = None
            else:
                found.add(key)
        first = False
    for key in initial:
        if capitalised[key] >= 2 and key not in lower:
            found.add(key)
    return frozenset(stem(k) for k in found)


def is_title_case(title: str) -> bool:
    """Most words capitalised: a Title Case headline, whose capitals say nothing."""
    return _is_title_case(_tokens(title))


def _is_title_case(tokens: list[_Token]) -> bool:
    words = [t for t in tokens if t[3]]
    if len(words) < 3:
        return False
    return sum(1 for t in words if t[4]) / len(words) > 0.6


@pickled_by_fields  # issue 8: sent from the parse workers to the store process
@dataclass(frozen=True, slots=True)
class Features:
    """What clustering knows of one item."""

    title: frozenset[str]  # content tokens of the title
    doc: frozenset[str]  # content tokens of title + the first LEAD_CHARS of the text
    names: frozenset[str]  # proper names (stemmed, lower case)
    numbers: frozenset[str]
    years: frozenset[str]
    states: frozenset[str] = frozenset()  # US states named ("west virginia", "maine")
    # the numbers of the episodes the headline names ("Episode 74: ...", "Ep. 12"), as
    # written but without leading zeros
    episodes: frozenset[str] = frozenset()


# An episode's number in a headline: "Episode 74", "Ep. 12", "Episode #3", "Episode No. 5",
# and the same word in French, Spanish and Italian. A podcast's feed and its teaser feed
# carry one episode under two headlines that share the number. The spaces are taken
# possessively (`\s*+`): with plain `\s*`, a headline of "ep", 20,000 spaces, "no" and
# 20,000 more took 4.3 s, each way of sharing the spaces out tried in turn.
_EPISODE = re.compile(r"\b(?:episode|épisode|episodio|ep)\.?\s*+(?:no\.?\s*+)?#?\s*+(\d+)\b", re.I)


def episodes(title: str) -> frozenset[str]:
    """The episode numbers a headline names (see `_EPISODE`)."""
    return frozenset(str(int(n)) for n in _EPISODE.findall(title))


def states(text: str) -> frozenset[str]:
    """The US states `text` names (after abbreviations are spelled out); "West Virginia"
    is not also "Virginia"."""
    lower = _ascii_lower(text)
    if lower is not None and _STATE_LAST_WORDS.isdisjoint(_WORD_RUN.findall(lower)):
        return frozenset()  # no state (the usual case)
    return frozenset(m.group(1).lower() for m in _STATE_RE.finditer(text))


def extract_features(title: str, text: str, lead_chars: int = LEAD_CHARS) -> Features:
    title = normalize_text(title or "")
    lead = normalize_text((text or "")[:lead_chars])
    # Each text is scanned once for the words of `content_tokens`, `names`, `is_title_case`
    # and `states`' first test. The "\n" between title and lead breaks a sentence, so
    # f"{title}\n{lead}" scans as the title's words, a break, and the lead's words.
    title_scan, lead_scan = _tokens(title), _tokens(lead)
    title_tokens = frozenset(_content_tokens(title_scan))
    doc = title_tokens | frozenset(_content_tokens(lead_scan))
    title_case = _is_title_case(title_scan)
    found_names = (
        _names(lead_scan, also=title_scan)
        if title_case
        else _names([*title_scan, _BREAK, *lead_scan], also=[])
    )
    both = f"{title}\n{lead}"
    nums, years = numbers(both)
    hint = any(map(_STATE_HINT, title_scan)) or any(map(_STATE_HINT, lead_scan))
    return Features(
        title=title_tokens,
        doc=doc,
        names=frozenset(n for n in found_names if n in doc),
        numbers=nums,
        years=years,
        states=states(both) if hint else frozenset(),
        episodes=episodes(title),
    )
