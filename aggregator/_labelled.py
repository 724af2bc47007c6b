"""Labelled examples: the seed_items YAML format in and out (pure: text, not files).

Shared by `config` (which checks the files feeds.yaml names, up front) and `classify`
(which trains on them); a private helper, so neither stage imports the other.

    items:
      - text: Police believe the man was attempting suicide by cop
        section: incidents        # a section id, or `none` for off-topic
        also: [crisis]            # optional: other sections an editor would accept
        source: https://...       # optional provenance, kept as the example's origin

Imports `types` and `exceptions` only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import yaml

from aggregator.exceptions import ConfigError, ConfigProblem
from aggregator.types import Example

OFF_TOPIC = "none"


def _problem(name: str, line: int, key: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(name, line, key, message)])


def parse_examples(text: str, name: str, sections: Collection[str] | None = None) -> list[Example]:
    """The examples in a labelled YAML text; `name` (a path) is used in errors and origins.

    With `sections`, a label that is not one of them (nor `none`) is an error.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise _problem(name, (mark.line + 1) if mark else 0, "", f"not valid YAML: {e}") from e
    if not isinstance(node, yaml.MappingNode):
        raise _problem(name, 1, "", "expected a mapping with an `items:` list")
    top = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    items = top.get("items")
    if not isinstance(items, yaml.SequenceNode):
        raise _problem(name, node.start_mark.line + 1, "items", "expected a list of items")
    out: list[Example] = []
    problems: list[ConfigProblem] = []
    for i, item in enumerate(items.value):
        line, key = item.start_mark.line + 1, f"items[{i}]"
        data: Any = yaml.safe_load(yaml.serialize(item)) if isinstance(item, yaml.Node) else None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            problems.append(ConfigProblem(name, line, key, "needs `text:` (a string)"))
            continue
        label = data.get("section")
        if not isinstance(label, str) or not label:
            problems.append(ConfigProblem(name, line, f"{key}.section", "needs `section:`"))
            continue
        also = data.get("also") or []
        if isinstance(also, str):
            also = [also]
        if not isinstance(also, list) or not all(isinstance(a, str) for a in also):
            problems.append(ConfigProblem(name, line, f"{key}.also", "expected a list of ids"))
            continue
        if sections is not None:
            unknown = [x for x in (label, *also) if x != OFF_TOPIC and x not in sections]
            if unknown:
                problems.append(
                    ConfigProblem(
                        name, line, f"{key}.section",
                        f"unknown section {unknown[0]!r} (sections: {', '.join(sections)}, none)",
                    )
                )  # fmt: skip
                continue
        source = data.get("source") or data.get("url") or ""
        origin = f"{name}:{line}" + (f" ({source})" if source else "")
        out.append(
            Example(
                " ".join(data["text"].split()),
                None if label == OFF_TOPIC else label,
                tuple(a for a in also if a != label),
                origin,
            )
        )
    if problems:
        raise ConfigError(problems)
    return out


def dump_examples(examples: Sequence[Example], header: str = "") -> str:
    """Examples as a labelled YAML text that `parse_examples` reads back."""
    items = []
    for e in examples:
        row: dict[str, Any] = {"text": e.text, "section": e.section or OFF_TOPIC}
        if e.also:
            row["also"] = list(e.also)
        if e.origin:
            row["source"] = e.origin
        items.append(row)
    body = yaml.safe_dump({"items": items}, allow_unicode=True, sort_keys=False, width=100)
    prefix = "".join(f"# {line}\n" for line in header.splitlines())
    return prefix + body
