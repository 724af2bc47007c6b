"""Classification commands (issue 5): explain, classify, items move/drop, review, eval,
examples export, reclassify.

`explain ITEM` and `classify "text"` show the same thing: the section chosen, the score per
section (rules, examples, combined), the rule terms that matched and the nearest labelled
examples. Corrections (`items move`, `items drop`) are stored, survive `reclassify`, and are
used as examples by the next run (and exported by `examples export`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from aggregator.classify import (
    Classifier,
    EvalReport,
    Explanation,
    classifier_factory,
    dump_examples,
    evaluate,
    item_text,
)
from aggregator.cli._common import EXIT_OK, UsageError, open_store, parse_time, write_export
from aggregator.pipeline import (
    correction_examples,
    load_examples,
    make_run_classifier,
    missing_example_files,
    read_example_file,
)
from aggregator.storage import StorageType
from aggregator.types import EDITOR_REASON, Config, Placement, StoredItem

DEFAULT_REVIEW_WINDOW = timedelta(days=7)
NEAREST_CHARS = 90


# --- output ---------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") if x else "0"


def _placement_line(p: Placement) -> str:
    section = p.section or "(no section)"
    return f"{section}, confidence {p.confidence:.2f}: {p.reason}"


def explanation_json(e: Explanation) -> dict[str, Any]:
    return {
        "section": e.placement.section,
        "confidence": e.placement.confidence,
        "low_confidence": e.low_confidence,
        "reason": e.placement.reason,
        "model": e.model,
        "off_topic": e.off_topic,
        "topic_term": e.topic_hit,
        "topic_veto": e.veto,
        "sections": [
            {
                "section": s.section,
                "rules": s.rule,
                "examples": s.learned,
                "combined": s.combined,
                "terms": list(s.terms),
                "excluded_by": s.excluded_by,
            }
            for s in e.sections
        ],
        "nearest": [
            {
                "text": n.example.text,
                "section": n.example.section,
                "similarity": n.similarity,
                "origin": n.example.origin,
            }
            for n in e.nearest
        ],
    }


def print_explanation(e: Explanation, out: TextIO) -> None:
    out.write(f"section: {_placement_line(e.placement)}\n")
    gate = f"topic term '{e.topic_hit}'" if e.topic_hit else "no topic term"
    if e.veto:
        gate += f"; topic exclusion '{e.veto}'"
    out.write(f"model: {e.model}; {gate}; off-topic score {_fmt(e.off_topic)}\n")
    width = max(len("section"), *(len(s.section) for s in e.sections))
    out.write(f"  {'section':<{width}}  {'rules':>6}  {'examples':>8}  {'combined':>8}  terms\n")
    for s in sorted(e.sections, key=lambda s: -s.combined):
        terms = ", ".join(s.terms)
        if s.excluded_by:
            terms = f"(excluded by '{s.excluded_by}') " + terms
        out.write(
            f"  {s.section:<{width}}  {_fmt(s.rule):>6}  {_fmt(s.learned):>8}  "
            f"{_fmt(s.combined):>8}  {terms}\n"
        )
    if e.nearest:
        out.write("nearest examples:\n")
        for n in e.nearest:
            text = n.example.text
            if len(text) > NEAREST_CHARS:
                text = text[: NEAREST_CHARS - 1] + "\u2026"
            label = n.example.section or "none"
            out.write(f"  {n.similarity:.2f}  {label:<{width}}  {text}  [{n.example.origin}]\n")
    else:
        out.write("nearest examples: (none: no labelled examples are configured)\n")


# --- helpers ----------------------------------------------------------------------------------


def _classifier(config: Config, storage: StorageType | None) -> Classifier:
    return make_run_classifier(config, load_examples(config, storage))


def _stored(storage: StorageType, item_id: int) -> StoredItem:
    stored = storage.get_item(item_id)
    if stored is None:
        raise UsageError(f"no item {item_id}; `aggregator items` lists the stored items")
    return stored


def _section_arg(config: Config, section: str) -> str:
    known = [s.id for s in config.sections]
    if section not in known:
        raise UsageError(f"unknown section {section!r}; sections: {', '.join(known)}")
    return section


def _default_section(config: Config, source_id: str) -> str | None:
    for s in config.sources:
        if s.id == source_id:
            return s.section
    return None  # a source since removed from feeds.yaml


def correction_text(stored: StoredItem) -> str:
    """What a correction keeps as its example text: what the learned layer reads."""
    return item_text(stored.item).rstrip(". ")


# --- commands -----------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    storage = open_store(config, now)
    try:
        stored = _stored(storage, args.item)
        corrections = {c.item_id: c for c in storage.get_corrections()}
        explanation = _classifier(config, storage).explain(
            stored.item, _default_section(config, stored.item.source_id)
        )
    finally:
        storage.close()
    correction = corrections.get(stored.id)
    if args.json:
        data = {
            "id": stored.id,
            "title": stored.item.title,
            "source": stored.item.source_id,
            "stored": {
                "section": stored.placement.section,
                "confidence": stored.placement.confidence,
                "reason": stored.placement.reason,
            },
            "correction": None
            if correction is None
            else {"section": correction.section, "created": correction.created.isoformat()},
            "now": explanation_json(explanation),
        }
        out.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return EXIT_OK
    out.write(f"item {stored.id} ({stored.item.source_id}): {stored.item.title}\n")
    out.write(f"stored: {_placement_line(stored.placement)}\n")
    if correction is not None:
        when = correction.created.astimezone(ZoneInfo(config.newsletter.timezone))
        pinned = correction.section or "off-topic"
        out.write(f"corrected: {pinned} by an editor on {when:%Y-%m-%d %H:%M}\n")
    out.write("classified again now:\n")
    print_explanation(explanation, out)
    return EXIT_OK


def cmd_classify(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    text = " ".join(args.text).strip()
    if not text:
        raise UsageError('give the text to classify: aggregator classify "a headline or teaser"')
    now = datetime.now(UTC)
    storage = open_store(config, now)
    try:
        explanation = _classifier(config, storage).classify_text(text)
    finally:
        storage.close()
    if args.json:
        out.write(json.dumps(explanation_json(explanation), ensure_ascii=False, indent=2) + "\n")
    else:
        print_explanation(explanation, out)
    return EXIT_OK


def _editor_placement(stored: StoredItem, section: str | None) -> Placement:
    reason = f"{EDITOR_REASON} moved to {section}" if section else f"{EDITOR_REASON} off-topic"
    p = stored.placement
    return Placement(
        section,
        dict(p.scores).get(section, 0.0) if section else 0.0,
        p.terms if section == p.section else (),
        p.scores,
        reason,
        1.0,
    )


def _correct(config: Config, item_id: int, section: str | None, out: TextIO) -> int:
    """`items move` pins the item AND the other members of its story (those no editor
    dropped) to `section`: a story's section is its members', so the whole story moves.
    `items drop` marks only the item off-topic: it leaves its story's outlets; the story
    stays where it is while another member is left (the message names them)."""
    now = datetime.now(UTC)
    storage = open_store(config, now)
    try:
        stored = _stored(storage, item_id)
        story = storage.get_story(stored.story_id)
        members = story.members if story is not None else (stored,)
        if section is None:
            targets = [stored]
        else:
            targets = [m for m in members if m.id == item_id or not m.placement.dropped]
        for m in targets:
            storage.add_correction(
                m.id, section, correction_text(m), _editor_placement(m, section), now
            )
        after = storage.get_story(stored.story_id)
    finally:
        storage.close()
    was = stored.placement.section or "(no section)"
    now_in = section or "off-topic (kept out of the digest and feed)"
    out.write(f"item {item_id}: {was} -> {now_in}: {stored.item.title}\n")
    left = [m for m in (after.members if after else ()) if not m.placement.dropped]
    if section is not None and len(targets) > 1:
        ids = ", ".join(str(m.id) for m in targets if m.id != item_id)
        out.write(f"story {stored.story_id} moves with it: item(s) {ids} pinned to {section} too\n")
    elif section is None and left and after is not None:
        ids = " ".join(str(m.id) for m in left)
        out.write(
            f"story {stored.story_id} stays in {after.section or '(no section)'} with "
            f"{len(left)} other item(s): `aggregator items drop` each of {ids} to take it "
            f"out, or `aggregator stories split {stored.story_id} ...` if they are another event\n"
        )
    elif section is None:
        out.write(f"story {stored.story_id} has no other item: it leaves the digest and feed\n")
    return EXIT_OK


def cmd_items_move(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    return _correct(config, args.item, _section_arg(config, args.section), out)


def cmd_items_drop(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    return _correct(config, args.item, None, out)


def awaiting_review(
    storage: StorageType,
    config: Config,
    start: datetime,
    end: datetime | None = None,
    below: float | None = None,
) -> list[StoredItem]:
    """Items first seen in [start, end) under the review threshold (`below`, default
    classify.review_below) that no editor decided, least confident first."""
    pinned = {c.item_id for c in storage.get_corrections()}
    threshold = config.classify.review_below if below is None else below
    found = [
        s
        for s in storage.get_items(since=start, until=end)
        if s.id not in pinned and s.placement.confidence < threshold
    ]
    return sorted(found, key=lambda s: (s.placement.confidence, -s.id))


def review_note(storage: StorageType, config: Config, start: datetime, end: datetime) -> str:
    """The line `aggregator digest` prints when some of its window's items await review."""
    n = len(awaiting_review(storage, config, start, end))
    if not n:
        return ""
    return (
        f"{n} item{'s' if n != 1 else ''} of this window placed with low confidence: "
        f"`aggregator review --since {start:%Y-%m-%dT%H:%M}Z` lists them\n"
    )


def cmd_review(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    since = (
        parse_time(args.since, config.newsletter.timezone, now)
        if args.since
        else now - DEFAULT_REVIEW_WINDOW
    )
    below = config.classify.review_below if args.below is None else args.below
    storage = open_store(config, now)
    try:
        items = awaiting_review(storage, config, since, below=below)
    finally:
        storage.close()
    if args.json:
        for s in items:
            row = {
                "id": s.id,
                "title": s.item.title,
                "source": s.item.source_id,
                "section": s.placement.section,
                "confidence": s.placement.confidence,
                "reason": s.placement.reason,
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return EXIT_OK
    for s in items:
        section = s.placement.section or "(none)"
        out.write(
            f"{s.id:>6}  {s.placement.confidence:4.2f}  {section:<11} "
            f"{s.item.source_id}: {s.item.title}\n"
        )
    out.write(
        f"{len(items)} items below confidence {below:g} since {since:%Y-%m-%d %H:%M} UTC; "
        "`aggregator explain ID` shows why, `aggregator items move ID SECTION` or "
        "`aggregator items drop ID` decides\n"
    )
    return EXIT_OK


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_report(report: EvalReport, name: str, out: TextIO, *, verbose: bool = False) -> None:
    n = len(report.rows)
    right = sum(r.correct for r in report.rows)
    out.write(f"{name}: {n} labelled items, model {report.model}, {report.mode}\n")
    out.write(f"accuracy (section or an `also` section): {_pct(report.accuracy)} ({right}/{n})\n")
    off = [r for r in report.rows if r.example.section is None]
    kept = sum(r.predicted is None for r in off)
    out.write(f"off-topic kept out: {_pct(report.off_topic_kept_out)} ({kept}/{len(off)})\n")
    out.write(f"on-topic kept in: {_pct(report.on_topic_kept_in)}\n")
    width = max(len("section"), *(len(label) for label in report.labels))
    out.write(f"  {'section':<{width}}  {'precision':>9}  {'recall':>7}  {'items':>5}\n")
    for label, precision, recall, support in report.precision_recall():
        out.write(f"  {label:<{width}}  {_pct(precision):>9}  {_pct(recall):>7}  {support:>5}\n")
    conf = report.confusion()
    short = {label: label[:5] for label in report.labels}
    out.write("confusion (rows: label, columns: filed as):\n")
    out.write(f"  {'':<{width}}" + "".join(f" {short[c]:>5}" for c in report.labels) + "\n")
    for g in report.labels:
        counts = "".join(f" {conf.get((g, p), 0) or '.':>5}" for p in report.labels)
        out.write(f"  {g:<{width}}{counts}\n")
    if verbose:
        out.write("wrong:\n")
        for r in report.rows:
            if not r.correct:
                text = r.example.text[:80]
                label = r.example.section or "none"
                out.write(f"  {label} -> {r.predicted or 'none'}: {text}  ({r.reason})\n")


def cmd_eval(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    ids = [s.id for s in config.sections]
    labelled = read_example_file(args.file, config)
    if not labelled:
        raise UsageError(f"{args.file}: no labelled items")
    configured = [
        e
        for path in config.classify.examples
        if path.is_file() and path.resolve() != args.file.resolve()
        for e in read_example_file(path, config)
    ]
    settings = config.classify
    if args.model:
        from dataclasses import replace

        settings = replace(settings, model=args.model)
    factory = classifier_factory(config.sections, config.topic, settings)
    report = evaluate(factory, labelled, configured, leave_one_out=not args.held_out, labels=ids)
    print_report(report, str(args.file), out, verbose=args.verbose)
    return EXIT_OK


def cmd_examples_export(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    storage = open_store(config, now)
    try:
        examples = correction_examples(storage.get_corrections(), config)
    finally:
        storage.close()
    header = (
        f"Editors' corrections exported by aggregator on {now:%Y-%m-%d %H:%M} UTC.\n"
        "Add this file to `classify.examples` in feeds.yaml to keep them as examples."
    )
    return write_export(
        dump_examples(examples, header), args.out, f"wrote {len(examples)} examples", out, err
    )


def cmd_reclassify(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    since = parse_time(args.since, config.newsletter.timezone, now) if args.since else None
    storage = open_store(config, now)
    try:
        classifier = _classifier(config, storage)
        stored = storage.get_items(since=since)
        placements = classifier.classify_many(
            [s.item for s in stored], [_default_section(config, s.item.source_id) for s in stored]
        )
        changed = [
            (s.id, p)
            for s, p in zip(stored, placements, strict=True)
            if (p.section, p.confidence, p.reason)
            != (s.placement.section, s.placement.confidence, s.placement.reason)
        ]
        written = storage.set_placements(changed)
        pinned = {c.item_id for c in storage.get_corrections()}
    finally:
        storage.close()
    moved = sum(  # pinned items keep their section: not counted (review finding 14)
        1
        for s, p in zip(stored, placements, strict=True)
        if p.section != s.placement.section and s.id not in pinned
    )
    out.write(
        f"{len(stored)} items classified with model {classifier.model}: {written} updated, "
        f"{moved} changed section ({len(changed) - written} corrected items kept as pinned)\n"
    )
    return EXIT_OK


def cmd_check_examples(config: Config, out: TextIO) -> None:
    """`aggregator check` addition: the example files, read and counted."""
    for path in missing_example_files(config):
        out.write(f"warning: classify.examples: {path} not found; the classifier does without it\n")
    total = sum(len(read_example_file(p, config)) for p in config.classify.examples if p.is_file())
    out.write(f"classify: {total} labelled examples, model {config.classify.model}\n")


# --- wiring ---------------------------------------------------------------------------------------


def add_items_subcommands(items: argparse.ArgumentParser) -> None:
    """`items move` and `items drop` under `items` (which still lists without a subcommand)."""
    sub = items.add_subparsers(
        dest="items_action",
        metavar="ACTION",
        help="without one, list the items; move or drop one (an editor's correction)",
    )
    p = sub.add_parser(
        "move", help="pin an item to a section (kept when items are classified again)"
    )
    p.add_argument("item", type=int, metavar="ITEM", help="the item's id (see `aggregator items`)")
    p.add_argument("section", metavar="SECTION", help="the section id to file it under")
    p.set_defaults(func=cmd_items_move)
    p = sub.add_parser(
        "drop", help="mark an item off-topic: out of the digest and feed, kept for editors"
    )
    p.add_argument("item", type=int, metavar="ITEM", help="the item's id (see `aggregator items`)")
    p.set_defaults(func=cmd_items_drop)


def add_classify_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "explain", help="why an item is in its section: scores, matched terms, nearest examples"
    )
    p.add_argument("item", type=int, metavar="ITEM", help="the item's id (see `aggregator items`)")
    p.add_argument("--json", action="store_true", help="the explanation as JSON")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("classify", help="classify a free text the way items are classified")
    p.add_argument("text", nargs="+", metavar="TEXT", help="a headline or teaser (quote it)")
    p.add_argument("--json", action="store_true", help="the explanation as JSON")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "review", help="items placed with low confidence, least confident first (before a digest)"
    )
    p.add_argument("--since", metavar="T", help="first seen at or after T (default: 7d)")
    p.add_argument(
        "--below", type=float, metavar="X", help="confidence threshold (default: review_below)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser(
        "eval", help="measure classification on a labelled YAML file (leave-one-out)"
    )
    p.add_argument("file", type=Path, metavar="FILE", help="labelled items: text, section, also")
    p.add_argument(
        "--held-out",
        action="store_true",
        help="train on the configured examples only, not on the file's other items",
    )
    p.add_argument(
        "--model",
        choices=("auto", "tfidf", "embeddings", "rules"),
        help="the model to measure (default: classify.model)",
    )
    p.add_argument("--verbose", action="store_true", help="list the items filed wrongly")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("examples", help="labelled examples: export editors' corrections")
    actions = p.add_subparsers(
        dest="examples_action", metavar="ACTION", required=True, help="what to do"
    )
    e = actions.add_parser(
        "export", help="write corrections as labelled YAML (the seed_items format)"
    )
    e.add_argument("--out", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    e.set_defaults(func=cmd_examples_export)

    p = sub.add_parser(
        "reclassify", help="classify stored items again (editors' corrections are kept)"
    )
    p.add_argument("--since", metavar="T", help="only items first seen at or after T")
    p.set_defaults(func=cmd_reclassify)


__all__: Sequence[str] = [
    "add_classify_parsers",
    "add_items_subcommands",
    "awaiting_review",
    "cmd_check_examples",
    "explanation_json",
    "print_explanation",
    "print_report",
    "review_note",
]
