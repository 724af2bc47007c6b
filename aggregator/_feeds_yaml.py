"""Editing feeds.yaml as text: append source entries, keep every comment and blank line.

    append_sources(text, entries, file) -> text     pure: the new text, nothing written
    add_sources(path, entries) -> Config            append, validate, replace the file

A YAML dumper would drop the editor's comments and reflow the file, so the new entries are
inserted as text right after the last item of the top-level `sources:` list, in the style of
the items already there: flow (`- {id: a, ...}`) or block, the same indentation, and a blank
line between items if the list uses them. The result is validated with `load_config` on a
sibling copy first; only a valid file replaces feeds.yaml (atomically), so a running
scheduler never reads a half-edited or broken file.
Private helper of the CLI; imports `config`, `types`, `exceptions` and `_yaml_nodes`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from aggregator.config import load_config
from aggregator.exceptions import AggregatorError, ConfigError, ConfigProblem
from aggregator.types import Config

# The keys in the order an editor writes them (keep in sync with config._SOURCE_KEYS).
KEY_ORDER = ("id", "name", "url", "kind", "interval", "section", "max_bytes")
# Plain (unquoted) only when obviously safe: no flow indicators, no " #", no ": ".
_PLAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._~:/?=&%+@;!$*()' -]*[A-Za-z0-9._~/?=&%+@;!$*()'-])?"
)

Entry = Mapping[str, str | int]


class EditError(AggregatorError):
    """feeds.yaml could not be written (permissions, disk); it is unchanged."""


def scalar(value: str | int) -> str:
    """A YAML scalar that reads back as exactly `value` (a string stays a string)."""
    if isinstance(value, int):
        return str(value)
    if _PLAIN.fullmatch(value) and ": " not in value and " #" not in value:
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value, ensure_ascii=False)


def _ordered(entry: Entry) -> list[tuple[str, str | int]]:
    keys = [k for k in KEY_ORDER if k in entry] + [k for k in entry if k not in KEY_ORDER]
    return [(k, entry[k]) for k in keys]


def _problem(file: str, line: int | None, message: str) -> ConfigError:
    return ConfigError(ConfigProblem(file, line, "sources", message))


def append_sources(
    text: str, entries: Sequence[Entry], file: str = "feeds.yaml", comment: str | None = None
) -> str:
    """`text` with `entries` appended to its top-level `sources:` block list."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise _problem(file, None, f"cannot read the file as YAML: {e}") from e
    if not isinstance(root, yaml.MappingNode):
        raise _problem(file, None, "the top level is not a mapping")
    seq = next(
        (v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "sources"),
        None,
    )
    if not isinstance(seq, yaml.SequenceNode) or not seq.value:
        line = seq.start_mark.line + 1 if seq is not None else None
        raise _problem(file, line, "'sources:' is not a non-empty list; add the source by hand")
    if seq.flow_style:
        raise _problem(
            file,
            seq.start_mark.line + 1,
            "'sources:' is written as a [flow, list]; aggregator can only append to a block "
            "list ('- id: ...' lines); add the source by hand",
        )
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    first, last = seq.value[0], seq.value[-1]

    # Indentation: the column of the first item's dash, and of its keys.
    key_col = first.start_mark.column
    dash_col = lines[first.start_mark.line].rfind("-", 0, key_col)
    if dash_col < 0:
        raise _problem(file, first.start_mark.line + 1, "cannot find the list's '-' marker")
    flow = isinstance(first, yaml.MappingNode) and bool(first.flow_style)
    gap = _uses_blank_lines(lines, seq.value)

    # Insert after the line holding the end of the last item's content.
    end = _content_end(last)
    end_line = end.line if end.column > 0 else end.line - 1
    insert_at = sum(len(x) for x in lines[: end_line + 1])
    head, tail = text[:insert_at], text[insert_at:]
    if head and not head.endswith(("\n", "\r")):
        head += newline

    pad = " " * dash_col
    block: list[str] = []
    for n, entry in enumerate(entries):
        if gap:
            block.append("")
        if comment and n == 0:
            block.append(f"{pad}# {comment}")
        pairs = _ordered(entry)
        if flow:
            inner = ", ".join(f"{k}: {scalar(v)}" for k, v in pairs)
            block.append(f"{pad}- {{{inner}}}")
        else:
            for i, (k, v) in enumerate(pairs):
                lead = f"{pad}-{' ' * (key_col - dash_col - 1)}" if i == 0 else " " * key_col
                block.append(f"{lead}{k}: {scalar(v)}")
    return head + newline.join(block) + newline + tail


def _content_end(node: yaml.Node) -> yaml.Mark:
    """The end of a node's last scalar (a block mapping's own end mark runs on to the next key)."""
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
        if not node.value:
            break
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    return node.end_mark


def _uses_blank_lines(lines: list[str], items: list[yaml.Node]) -> bool:
    """True when the list separates its items with blank lines (checked between 1st and 2nd)."""
    if len(items) < 2:
        return False
    end = _content_end(items[0]).line
    start = items[1].start_mark.line
    return any(not lines[i].strip() for i in range(end + 1, min(start, len(lines))))


def add_sources(
    path: Path, entries: Sequence[Entry], comment: str | None = None
) -> tuple[Config, str]:
    """Append `entries` to feeds.yaml and validate; the file changes only if the result is valid.

    Returns the new config and the new text. Raises ConfigError (problems point into the
    edited text, at `path`) or EditError; in both cases the file is as it was.
    """
    try:
        original = path.read_bytes()
    except OSError as e:
        raise EditError(f"cannot read {path}: {e.strerror or e}") from e
    text = original.decode("utf-8-sig")
    bom = "\ufeff" if original.startswith(b"\xef\xbb\xbf") else ""
    new_text = bom + append_sources(text, entries, str(path), comment)
    mode = path.stat().st_mode & 0o777
    # The copy sits beside feeds.yaml so relative paths (database, templates) resolve alike.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(new_text)
        os.chmod(tmp, mode)
        try:
            config = load_config(tmp)
        except ConfigError as e:
            raise ConfigError(
                [replace(p, file=str(path)) if p.file == str(tmp) else p for p in e.problems]
            ) from None
        os.replace(tmp, path)
    except OSError as e:
        raise EditError(f"cannot write {path}: {e.strerror or e}; it is unchanged") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return replace(config, path=path.absolute()), new_text


def propose_id(url: str, taken: Collection[str]) -> str:
    """A source id from the URL's host: https://www.police1.com/x -> police1 (then -2, -3)."""
    host = (urlsplit(url).hostname or "").lower()
    labels = host.split(".")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if labels and labels[0] == "www":
            labels = labels[1:]
        if len(labels) > 1:
            labels = labels[:-1]  # the top-level domain says nothing
    base = re.sub(r"[^a-z0-9]+", "-", "-".join(labels)).strip("-")[:56] or "source"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def same_url(a: str, b: str) -> bool:
    """Two source URLs name the same resource (scheme/host case and a trailing / ignored)."""

    def key(url: str) -> tuple[str, str, str, str]:
        p = urlsplit(url.strip())
        return (p.scheme.lower(), p.netloc.lower(), p.path.rstrip("/") or "/", p.query)

    return key(a) == key(b)
