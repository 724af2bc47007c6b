"""Text helpers of the classify stage: folding, rule-term patterns, tokens for the learned layer.

Pure; imports nothing from the package but `types`.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from aggregator.types import Rule

_FOLD = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "`": "'",
        "\u201c": '"', "\u201d": '"', "\u201f": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
        "\u00ad": None,  # soft hyphen
    }
)  # fmt: skip
_SEP = r"[\s\-/]+"  # between the words of a phrase
_HYPHEN = r"[\s\-]?"  # where the term itself has a hyphen
_CONSONANT_Y = re.compile(r"[^aeiou]y")


def fold(text: str) -> str:
    """Lower-case, NFKC, straight quotes and hyphens, single spaces: what rules are matched on."""
    if text.isascii():  # NFKC keeps ASCII; of _FOLD only "`" is ASCII; casefold is lower
        return " ".join(text.replace("`", "'").lower().split())
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    # str.split() splits where `\s+` matches (both use str.isspace): re.sub + strip, faster
    return " ".join(text.split())


def _word_pattern(word: str, inflect: bool) -> str:
    """One word of a term, with its plural (if `inflect`) or, for `word*`, any ending."""
    if word.endswith("*"):
        return re.escape(word[:-1]) + r"\w*"
    if not inflect or len(word) < 2 or not word[-1:].isalpha():
        return re.escape(word)
    if word.endswith("is") and len(word) > 4:  # crisis -> crises, analysis -> analyses
        return re.escape(word[:-2]) + "(?:is|es)"
    if _CONSONANT_Y.search(word[-2:]) and len(word) > 2:  # policy -> policies
        return re.escape(word[:-1]) + "(?:y|ies)"
    return re.escape(word) + "(?:e?s|'s)?"


def phrase_pattern(phrase: str) -> str:
    """The regex source a word/phrase term compiles to (whole words, see the package docs)."""
    words = fold(phrase).split(" ")
    parts = []
    for word in words:
        pieces = [p for p in word.split("-") if p]  # "de-escalation": plural on the last piece
        parts.append(
            _HYPHEN.join(_word_pattern(p, i == len(pieces) - 1) for i, p in enumerate(pieces))
        )
    return r"(?<!\w)" + _SEP.join(p for p in parts if p) + r"(?!\w)"


def _needle(phrase: str) -> str | None:
    """The folded start of a term's first word that every inflected match still contains."""
    first = fold(phrase).split(" ")[0].split("-")[0].rstrip("*")
    # Inflection may change the last two letters (policy -> policies, crisis -> crises).
    needle = first[:-2] if len(first) > 4 else first
    return needle or None


@dataclass(frozen=True, slots=True)
class Term:
    """A compiled rule term."""

    label: str  # the term as the editor wrote it
    weight: float
    regex: re.Pattern[str]
    # A substring every match must contain (None for regex rules): a plain `in` test skips
    # most regex searches, which otherwise dominate the whole pipeline's CPU time.
    needle: str | None = None

    @classmethod
    def of(cls, rule: Rule) -> Term:
        if rule.regex:
            return cls(rule.pattern, rule.weight, re.compile(rule.pattern, re.IGNORECASE))
        return cls(
            rule.pattern,
            rule.weight,
            re.compile(phrase_pattern(rule.pattern), re.IGNORECASE),
            _needle(rule.pattern),
        )

    @classmethod
    def phrase(cls, phrase: str) -> Term:
        return cls.of(Rule(phrase))

    def search(self, text: str) -> bool:
        if self.needle is not None and self.needle not in text:
            return False
        return self.regex.search(text) is not None


# --- tokens for the learned layer ------------------------------------------------------------

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
# Function words carry no topic; "police" and "officer" are kept: they matter to the gate.
_STOPWORDS = """a about after again against all also am an and any are as at be because been
before being between both but by can could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its itself just me
more most my no nor not now of off on once only or other our ours out over own same she should
so some such than that the their theirs them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you
your yours s t said says say new one two"""
STOPWORDS = frozenset(_STOPWORDS.split())
_SUFFIXES = ("ational", "ization", "ations", "ation", "ators", "ator", "ated", "ates", "ions",
             "ion", "ments", "ment", "ness", "ings", "ing", "ies", "ied", "ers", "ors", "er",
             "or", "ed", "es", "ly", "s")  # fmt: skip


def stem(word: str) -> str:
    """A light suffix stripper: 'simulators', 'simulation', 'simulated' -> 'simul'."""
    if len(word) <= 4 or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    return word.rstrip("e") if len(word) > 5 else word


def tokens(text: str) -> list[str]:
    """Stemmed content words of `text` (folded, hyphenated words also split into parts)."""
    out: list[str] = []
    for raw in _TOKEN_RE.findall(fold(text)):
        word = raw.replace("'s", "").replace("'", "")
        if "-" in word:
            parts = [p for p in word.split("-") if p]
            out.append(stem("".join(parts)))  # "de-escalation" and "deescalation" meet
            out.extend(stem(p) for p in parts if p not in STOPWORDS and len(p) > 2)
        elif word not in STOPWORDS and len(word) > 1:
            out.append(stem(word))
    return out


@lru_cache(maxsize=4096)  # training texts recur: every fold of an evaluation, every worker
def features(text: str) -> tuple[str, ...]:
    """Unigrams and adjacent bigrams of `tokens(text)`: the TF-IDF vocabulary."""
    toks = tokens(text)
    return (*toks, *(f"{a} {b}" for a, b in itertools.pairwise(toks)))
