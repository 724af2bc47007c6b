"""The benchmark in its CI configuration (100 sources, one round), so it cannot rot.

No timing is asserted: the machine running the tests is not the reference machine. What is
checked is that every part ran and wrote its rows: both peers' cycles, the stages, the second
cycle's 304s, the scaling row, the results file and its Markdown table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.__main__ import STAGES, main
from bench.corpus import MIX, fixed_now, generate_corpus, source_paths, story_key

pytestmark = pytest.mark.slow


def test_corpus_mixes_formats_and_repeats_stories() -> None:
    corpus = generate_corpus(200, fixed_now())
    kinds = [d.kind for d in corpus.documents]
    assert len(kinds) == 200
    for kind, share in MIX:
        assert kinds.count(kind) == round(200 * share)
    assert 0.10 <= corpus.duplicates / corpus.items <= 0.15
    # no source carries a story twice (both peers would store it once): at the benchmark's
    # size, every document's 30 item links name 30 stories
    item_link = {
        "rss": r"<link>([^<]+-\d+[^<]*)</link>",
        "atom": r'<link rel="alternate" type="text/html" href="([^"]+)"/>',
        "json": r'"url": "([^"]+)"',
        "page": r'<h2 class="teaser__title"><a href="([^"]+)">',
    }
    for d in generate_corpus(1000, fixed_now()).documents:
        links = re.findall(item_link[d.kind], d.body.decode())
        assert len(links) == 30 and len({story_key(u) for u in links}) == 30, d.path
    assert generate_corpus(200, fixed_now()) == corpus  # deterministic
    # repeated stories carry tracking parameters, in every format
    for kind, _ in MIX:
        assert any(
            b"utm_source=" in d.body or b"fbclid=" in d.body
            for d in corpus.documents
            if d.kind == kind
        )
    # the measured processes take the URLs from `source_paths`, which makes no bodies
    assert source_paths(200) == [(d.path, d.kind) for d in corpus.documents]
    assert source_paths(7) == [(d.path, d.kind) for d in generate_corpus(7, fixed_now()).documents]
    # repeats: agency copies (the story's URL, tracked) and rewrites (the outlet's own URL);
    # every link names its story (`story_key`), the truth the benchmark checks stories with
    body = b"".join(d.body for d in corpus.documents).decode()
    links = [u for u in re.findall(r"<link>([^<]+)</link>", body) if not u.endswith("/")]
    rewrites = [u for u in links if u.startswith("https://outlet")]
    assert 0.03 * len(links) <= len(rewrites) <= 0.09 * len(links)
    assert len({story_key(u) for u in links}) < len(links)
    assert story_key("https://news3.example.com/t/2026/11/a-b-1203?utm_source=x") == "1203"
    assert story_key("https://outlet7.example.net/t/a-b-1203") == "1203"


def test_quick_benchmark_writes_every_row(tmp_path: Path) -> None:
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["sources"] == 100
    [pair] = results["pairs"]
    ours, reader = pair["ours"], pair["reader"]
    assert ours["first"]["failed_count"] == 0
    assert ours["first"]["stored_items"] == 3000  # every item of every format, pages included
    assert ours["second"]["not_modified"] == 100  # the unchanged cycle is all 304s
    assert ours["second"]["new_items"] == 0
    assert set(ours["first"]["stages"]) == set(STAGES)
    assert ours["digest"]["stories"] > 0
    assert ours["store_bytes"] > 0
    # the timed rounds run without the memory sampler; one more run of each peer has it
    assert ours["peak_rss_tree"] is None and reader["peak_rss_tree"] is None
    memory = results["memory"]
    assert memory["ours"]["peak_rss_tree"] > 0 and memory["reader"]["peak_rss_tree"] > 0
    assert results["summary"]["peak_rss_max"] == memory["ours"]["peak_rss_tree"]
    assert reader["first"]["stored_items"] > 0  # the peer really ran on the same sources
    # CPU over all of each peer's processes: ours parses in worker processes, which count
    # once they have ended; busy cores, on average, can be no more than the machine has
    cores = results["machine"]["cores"]
    for cyc in (ours["first"], reader["first"]):
        assert cyc["cpu_total"] == pytest.approx(cyc["cpu_main"] + cyc["cpu_children"])
        assert 0 < cyc["cores_busy"] <= cores * 1.05
    assert ours["first"]["cpu_children"] > 0
    assert results["summary"]["cpu_for_target"] > 0
    assert pair["ratio_first"] > 0
    # diagnosis: the same round's cycle without cross-source clustering, all items stored
    assert pair["ours_unclustered"]["first"]["stored_items"] == 3000
    # clustering only ever merges: without it there are at least as many stories
    assert pair["ours_unclustered"]["first"]["stories"] >= ours["first"]["stories"]
    assert pair["ratio_first_unclustered"] > 0
    # what the timed cycle made, against the corpus's truth: the agency copies (same URL) and
    # the outlets' rewrites (URLs of their own) joined, distinct stories kept apart
    quality, off = ours["clustering_quality"], pair["ours_unclustered"]["clustering_quality"]
    assert quality["true_pairs"] > 100
    assert quality["precision"] >= 0.98 and quality["recall"] >= 0.98
    assert off["precision"] >= 0.98 and off["recall"] < 0.75  # rewrites need clustering
    assert results["summary"]["stories_quality"] == quality
    assert [row["sources"] for row in results["scaling"]] == [100]
    assert set(results["summary"]["targets"]) >= {
        "full cycle >= 3x faster than reader",
        "second cycle >= 10x faster than first",
        "peak memory < 300 MB",
        "digest of 200 stories < 1 s",
    }
    table = (tmp_path / "RESULTS.md").read_text()
    for heading in (
        "## Targets",
        "## Paired rounds",
        "## CPU of the first cycles",
        "## Stages of our first cycle",
        "## Scaling",
    ):
        assert heading in table
    assert "reader" in table and "| 100 | 3,000 |" in table
    assert "without cross-source clustering" in table
    assert "Stories against the corpus's truth" in table
