"""Typed reads of a composed YAML node tree, with a line number for every problem.

Private helper of the config stage (feeds.yaml -> Config). `config.py` composes the file
with PyYAML's SafeLoader (`yaml.compose`: nodes only, no Python objects are ever built, so a
`!!python/...` tag cannot run anything) and reads the nodes through a `NodeReader`, which
collects `ConfigProblem`s instead of raising at the first one.

Typing is YAML-1.2-like on purpose: a string field takes the scalar's raw text (`no` stays
"no", `1.10` stays "1.10"), a number field needs a plain (unquoted) number, a bool field
accepts only true/false.

Imports only `aggregator.exceptions`; must not import any stage, storage, pipeline or cli.
"""

from __future__ import annotations

import difflib
import re
import warnings
import zoneinfo
from collections.abc import Collection
from urllib.parse import urlsplit

import yaml

from aggregator.exceptions import ConfigProblem

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
SEQ, MAP, TIMESTAMP, MERGE = (_TAG + t for t in ("seq", "map", "timestamp", "merge"))
# Tags the safe resolver gives to untagged nodes; anything else was written explicitly
# (`!!python/object/apply:...`, `!!binary`, `!custom`) and is refused.
_PLAIN_TAGS = frozenset({STR, INT, FLOAT, BOOL, NULL, SEQ, MAP, TIMESTAMP})

_INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_YAML11_BOOLS = frozenset({"yes", "no", "on", "off", "y", "n"})
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def join(path: str, key: str | int) -> str:
    """`sources` + 3 -> `sources[3]`; `sources[3]` + `url` -> `sources[3].url`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def suggest(word: str, choices: Collection[str]) -> str:
    """` (did you mean 'url'?)`, or an empty string when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(node: yaml.Node) -> str:
    """What a node is, in an editor's words, for 'expected X, got Y' messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if is_null(node):
        return "an empty value"
    if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        return f"the quoted string {shorten(node.value)!r}"
    return f"{shorten(str(node.value))!r}"


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL and node.style is None


def shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class NodeReader:
    """Reads typed values out of nodes; every failure becomes a ConfigProblem and `None`."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = []

    # --- problems -----------------------------------------------------------------------

    def add(self, where: yaml.Node | int | None, key: str, message: str) -> None:
        line = line_of(where) if isinstance(where, yaml.Node) else where
        self.problems.append(ConfigProblem(self.file, line, key, message))

    def sorted_problems(self) -> list[ConfigProblem]:
        return sorted(self.problems, key=lambda p: p.line or 0)

    # --- the document -------------------------------------------------------------------

    def compose(self, text: str) -> yaml.Node | None:
        """The document's root node; None (with a problem) on a syntax error."""
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            what = e.problem or e.context or "invalid YAML"
            if mark is None:
                self.add(None, "", f"YAML syntax error: {what}")
            else:
                line, column = int(mark.line) + 1, int(mark.column) + 1
                context = f" ({e.context})" if e.context and e.problem else ""
                self.add(line, "", f"YAML syntax error at column {column}: {what}{context}")
        except yaml.reader.ReaderError as e:
            line = text.count("\n", 0, int(e.position)) + 1
            self.add(line, "", f"YAML syntax error: {e.reason} (character {e.character!r})")
        except yaml.YAMLError as e:
            self.add(None, "", f"YAML syntax error: {e}")
        except RecursionError:
            self.add(None, "", "YAML nesting is too deep")
        return None

    # --- containers ---------------------------------------------------------------------

    def tag_ok(self, node: yaml.Node, path: str) -> bool:
        if node.tag in _PLAIN_TAGS:
            return True
        if node.tag == MERGE:
            self.add(node, path, "merge keys ('<<') are not supported; write the keys out")
            return False
        tag = node.tag.replace(_TAG, "!!")
        self.add(
            node, path, f"YAML tag '{tag}' is not allowed: only plain values, lists and mappings"
        )
        return False

    def mapping(
        self,
        node: yaml.Node,
        path: str,
        *,
        keys: Collection[str],
        required: Collection[str] = (),
    ) -> dict[str, yaml.Node] | None:
        """The mapping's known keys -> value nodes; unknown, duplicate and missing keys reported.

        Returns None only when the node is not a mapping at all.
        """
        if not self.tag_ok(node, path):
            return None
        if not isinstance(node, yaml.MappingNode):
            self.add(node, path, f"expected a mapping (key: value), got {describe(node)}")
            return None
        seen: dict[str, yaml.Node] = {}
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not self.tag_ok(key_node, path):
                continue
            if not isinstance(key_node, yaml.ScalarNode) or is_null(key_node):
                self.add(key_node, path, f"a key must be a plain name, got {describe(key_node)}")
                continue
            name = str(key_node.value)
            key_path = join(path, name)
            if name in seen:
                first = line_of(seen[name])
                self.add(
                    key_node, key_path, f"duplicate key '{name}' (first at line {first}); keep one"
                )
                continue
            seen[name] = key_node
            if name not in keys:
                hint = suggest(name, keys) or f" (expected one of: {', '.join(sorted(keys))})"
                self.add(key_node, key_path, f"unknown key '{name}'{hint}")
                continue
            out[name] = value_node
        for name in required:
            if name not in seen:
                self.add(node, join(path, name), f"missing required key '{name}'")
        return out

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node] | None:
        if not self.tag_ok(node, path):
            return None
        if not isinstance(node, yaml.SequenceNode):
            self.add(node, path, f"expected a list, got {describe(node)}")
            return None
        return list(node.value)

    # --- scalars ------------------------------------------------------------------------

    def _scalar(self, node: yaml.Node, path: str, expected: str) -> yaml.ScalarNode | None:
        if not self.tag_ok(node, path):
            return None
        if not isinstance(node, yaml.ScalarNode) or is_null(node):
            self.add(node, path, f"expected {expected}, got {describe(node)}")
            return None
        return node

    def string(
        self, node: yaml.Node, path: str, *, single_line: bool = True, max_len: int = 2000
    ) -> str | None:
        """The scalar's raw text (no YAML 1.1 coercion); empty and multi-line text refused."""
        scalar = self._scalar(node, path, "a string")
        if scalar is None:
            return None
        text = str(scalar.value)
        if not text.strip():
            self.add(node, path, "must not be empty")
            return None
        if len(text) > max_len:
            self.add(node, path, f"is too long ({len(text)} characters, at most {max_len})")
            return None
        if single_line and _CONTROL_RE.search(text.strip()):
            self.add(node, path, "must be a single line without control characters")
            return None
        return text.strip() if single_line else text

    def choice(
        self, node: yaml.Node, path: str, choices: Collection[str], what: str = "value"
    ) -> str | None:
        """A string that must be one of `choices`: "unknown mode 'smtpp' (did you mean
        'smtp'?) (one of smtp, files)"."""
        text = self.string(node, path)
        if text is not None and text not in choices:
            hint = suggest(text, choices)
            self.add(node, path, f"unknown {what} '{text}'{hint} (one of {', '.join(choices)})")
            return None
        return text

    def integer(self, node: yaml.Node, path: str, *, low: int, high: int) -> int | None:
        scalar = self._scalar(node, path, "a whole number")
        if scalar is None:
            return None
        if scalar.style is not None or not _INT_RE.fullmatch(scalar.value):
            quoted = (
                " (remove the quotes)" if scalar.style and _INT_RE.fullmatch(scalar.value) else ""
            )
            self.add(node, path, f"expected a whole number, got {describe(node)}{quoted}")
            return None
        value = int(scalar.value)
        if not low <= value <= high:
            self.add(node, path, f"must be between {low} and {high}, got {value}")
            return None
        return value

    def number(self, node: yaml.Node, path: str, *, low: float, high: float) -> float | None:
        """A finite decimal number in [low, high] (`.inf` and `.nan` are refused)."""
        scalar = self._scalar(node, path, "a number")
        if scalar is None:
            return None
        if scalar.style is not None or not _FLOAT_RE.fullmatch(scalar.value):
            quoted = (
                " (remove the quotes)" if scalar.style and _FLOAT_RE.fullmatch(scalar.value) else ""
            )
            self.add(node, path, f"expected a number, got {describe(node)}{quoted}")
            return None
        value = float(scalar.value)
        if not low <= value <= high:
            self.add(node, path, f"must be between {low:g} and {high:g}, got {value:g}")
            return None
        return value

    def boolean(self, node: yaml.Node, path: str) -> bool | None:
        scalar = self._scalar(node, path, "true or false")
        if scalar is not None and scalar.style is None:
            if scalar.value in _TRUE:
                return True
            if scalar.value in _FALSE:
                return False
        if scalar is not None:
            hint = " (YAML 1.1 spellings are not booleans here)"
            self.add(
                node,
                path,
                f"expected true or false, got {describe(node)}"
                + (hint if scalar.value.lower() in _YAML11_BOOLS else ""),
            )
        return None

    # --- checked strings -----------------------------------------------------------------

    def timezone(self, node: yaml.Node, path: str) -> str | None:
        name = self.string(node, path)
        if name is None:
            return None
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            hint = suggest(name, zoneinfo.available_timezones()) or " (e.g. 'America/New_York')"
            self.add(node, path, f"unknown time zone '{name}'{hint}")
            return None
        return name

    def regex(self, node: yaml.Node, path: str) -> str | None:
        pattern = self.string(node, path, max_len=500)
        if pattern is None:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # "possible nested set" and friends are mistakes too
                compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as e:
            self.add(node, path, f"invalid regular expression: {e.msg} at position {e.pos}")
            return None
        except Warning as w:
            self.add(node, path, f"doubtful regular expression: {w}")
            return None
        if compiled.search("") is not None:
            self.add(
                node, path, "this regular expression matches empty text, so it matches everything"
            )
            return None
        return pattern

    def identifier(self, node: yaml.Node, path: str, seen: dict[str, int], what: str) -> str | None:
        """An id: lowercase letters, digits, '-' and '_', unique among its kind."""
        ident = self.string(node, path)
        if ident is None:
            return None
        if not ID_RE.fullmatch(ident):
            hint = re.sub(r"[^a-z0-9_-]+", "-", ident.lower()).strip("-_")[:64]
            self.add(
                node,
                path,
                f"{what} id '{ident}' must be 1-64 lowercase letters, digits, '-' or '_', "
                f"starting with a letter or digit" + (f" (e.g. '{hint}')" if hint else ""),
            )
            return None
        if ident in seen:
            self.add(node, path, f"duplicate {what} id '{ident}' (first at line {seen[ident]})")
            return None
        seen[ident] = line_of(node)
        return ident

    def url(self, node: yaml.Node, path: str) -> str | None:
        """An absolute http(s) URL without credentials (never echoed: it may hold a password)."""
        raw = self.string(node, path, max_len=2000)
        if raw is None:
            return None
        if re.search(r"\s", raw):
            self.add(node, path, "a URL must not contain spaces (encode them as %20)")
            return None
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as e:
            self.add(node, path, f"not a valid URL: {e}")
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            got = f"'{scheme}:'" if scheme else "no scheme"
            self.add(node, path, f"only http:// and https:// URLs are allowed, got {got}")
            return None
        if parts.username is not None or parts.password is not None:
            self.add(node, path, "URLs with credentials (user:pass@) are not allowed; remove them")
            return None
        if not parts.hostname:
            self.add(node, path, "the URL has no host name")
            return None
        return raw
