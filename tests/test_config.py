"""config: feeds.yaml -> Config, and every kind of mistake reported with file, line and key."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.exceptions import ConfigError, ConfigProblem
from aggregator.types import Rule

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "feeds.yaml"

SECTION_ORDER = [
    ("training", "Training & Tactics"),
    ("crisis", "Crisis Intervention & Mental Health"),
    ("research", "Research & Data"),
    ("technology", "Technology & Simulation"),
    ("policy", "Policy & Legislation"),
    ("incidents", "In the Field"),
    ("community", "Community & Trust"),
    ("commentary", "Voices & Podcasts"),
]

# A small valid config; tests change one line of it at a time.
VALID = """\
newsletter:
  title: Test Weekly
  link: https://news.example.org/
  description: A test.
  timezone: America/New_York
storage:
  database: sqlite:///data/test.db
output:
  dir: public
sources:
  - id: one
    name: One
    url: https://one.example.org/feed
    kind: feed
    section: training
  - id: two
    name: Two
    url: https://two.example.org/news
    kind: page
sections:
  - id: training
    title: Training
    rules: [training, {term: tactics, weight: 2}, {regex: 'drills?', weight: 1.5}]
    exclude: [spring training]
  - id: other
    title: Other
"""


def write(tmp_path: Path, text: str, name: str = "feeds.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def replace(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_with(text: str, marker: str, nth: int = 1) -> int:
    """The 1-based line number of the nth line containing `marker`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    return hits[nth - 1]


def problems(tmp_path: Path, text: str) -> tuple[Path, ConfigError]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return path, info.value


def one_problem(tmp_path: Path, text: str, *, line: int | None, key: str) -> ConfigProblem:
    """Assert exactly one problem, at `line` and `key`, whose message names file:line and key."""
    path, error = problems(tmp_path, text)
    assert len(error.problems) == 1, error.problems
    problem = error.problems[0]
    assert problem.file == str(path)
    assert (problem.line, problem.key) == (line, key), problem
    rendered = str(error)
    assert str(path) in rendered
    if line is not None:
        assert f"{path}:{line}:" in rendered
    assert key in rendered
    return problem


# --- the shipped newsletter -------------------------------------------------------------


def test_shipped_feeds_yaml_loads() -> None:
    config = load_config(SHIPPED)
    assert [(s.id, s.title) for s in config.sections] == SECTION_ORDER
    assert all(s.rules and s.description for s in config.sections)
    assert len(config.sources) >= 9
    assert config.newsletter.timezone == "America/New_York"
    assert config.database == f"sqlite:///{(ROOT / 'data' / 'aggregator.db').as_posix()}"
    assert config.output_dir == ROOT / "public"
    assert config.topic.include and config.topic.exclude

    police1 = config.source("police1-de-escalation")
    assert police1.url == "https://www.police1.com/de-escalation"
    assert police1.kind == "page" and police1.selectors is None
    for source in config.sources:
        assert source.url.startswith("https://")
        if "news.google.com" in source.url or "bing.com" in source.url:
            assert source.section is None, f"{source.id}: broad searches get no default section"


def test_shipped_feeds_yaml_has_no_duplicate_urls() -> None:
    config = load_config(SHIPPED)
    urls = [s.url for s in config.sources]
    assert len(urls) == len(set(urls))


# --- a valid config ---------------------------------------------------------------------


def test_valid_config_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.path == tmp_path / "feeds.yaml"
    assert config.newsletter.title == "Test Weekly"
    one, two = config.sources
    assert (one.id, one.kind, one.section, one.interval) == (
        "one",
        "feed",
        "training",
        timedelta(hours=1),
    )
    assert (two.kind, two.section) == ("page", None)
    training = config.sections[0]
    assert training.rules == (
        Rule("training"),
        Rule("tactics", 2.0),
        Rule("drills?", 1.5, regex=True),
    )
    assert training.exclude == ("spring training",)
    assert training.min_score == 1.0
    assert config.templates_dir is None


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "etc" / "my-templates").mkdir(parents=True)
    text = replace("  dir: public\n", "  dir: ../site/public\n  templates: my-templates\n")
    path = write(tmp_path / "etc", text)
    config = load_config(path)
    assert config.database == f"sqlite:///{(tmp_path / 'etc' / 'data' / 'test.db').as_posix()}"
    assert config.output_dir == tmp_path / "site" / "public"
    assert config.templates_dir == tmp_path / "etc" / "my-templates"
    assert not (tmp_path / "etc" / "data").exists(), "loading must not create folders"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////var/lib/agg.db", "sqlite:////var/lib/agg.db"),
        ("sqlite://", "sqlite://"),
        ("'sqlite:///:memory:'", "sqlite:///:memory:"),
        ("postgresql://agg@db.example.org/agg", "postgresql+psycopg://agg@db.example.org/agg"),
        ("postgresql+psycopg://agg@localhost/agg", "postgresql+psycopg://agg@localhost/agg"),
    ],
)
def test_database_urls(tmp_path: Path, url: str, expected: str) -> None:
    text = replace("sqlite:///data/test.db", url)
    assert load_config(write(tmp_path, text)).database == expected


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("mysql://agg@localhost/agg", "unsupported database"),
        ("postgres://agg@localhost/agg", "postgresql://"),
        ("postgresql+psycopg2://agg@localhost/agg", "psycopg 3"),
        ("data/test.db", "not a database URL"),
    ],
)
def test_bad_database_urls(tmp_path: Path, url: str, hint: str) -> None:
    text = replace("sqlite:///data/test.db", url)
    problem = one_problem(tmp_path, text, line=line_with(text, "database:"), key="storage.database")
    assert hint in problem.message


def test_strings_keep_their_raw_text(tmp_path: Path) -> None:
    # YAML 1.1 would make these False and 1.1; the config reads them as written.
    text = replace("    name: One\n", "    name: no\n")
    text = replace("  title: Test Weekly\n", "  title: 1.10\n", text)
    config = load_config(write(tmp_path, text))
    assert config.sources[0].name == "no"
    assert config.newsletter.title == "1.10"


def test_optional_sections_and_schedule(tmp_path: Path) -> None:
    text = VALID + textwrap.dedent(
        """\
        fetch: {allow_private_network: true, connect_timeout: 2.5, max_redirects: 0,
                user_agent: "x/1"}
        schedule: {digest: "Friday 6:30", fetch_interval: 30}
        digest: {max_per_section: 5, teaser_chars: 100, feed_items: 20,
                 from: "News <news@example.org>"}
        topic: {include: [police, {term: officer, weight: 2}], exclude: [recipe]}
        """
    )
    config = load_config(write(tmp_path, text))
    assert config.fetch.allow_private_network is True
    assert config.fetch.connect_timeout == 2.5
    assert config.fetch.max_redirects == 0
    assert config.fetch.read_timeout == 15.0
    assert config.schedule.digest_cron == "fri 06:30"
    assert config.schedule.fetch_interval == timedelta(minutes=30)
    assert config.digest.sender == "News <news@example.org>"
    assert config.digest.max_per_section == 5
    assert config.topic.include == (Rule("police"), Rule("officer", 2.0))
    assert config.topic.exclude == ("recipe",)


# --- each mistake, with its line and key -------------------------------------------------


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    text = replace("    name: One\n", "    name: One: Two\n")
    problem = one_problem(tmp_path, text, line=line_with(text, "One: Two"), key="")
    assert "YAML syntax error at column" in problem.message


def test_duplicate_mapping_key_names_both_lines(tmp_path: Path) -> None:
    text = replace("    kind: feed\n", "    kind: feed\n    kind: page\n")
    first, second = line_with(text, "kind: feed"), line_with(text, "kind: page")
    problem = one_problem(tmp_path, text, line=second, key="sources[0].kind")
    assert f"first at line {first}" in problem.message


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    text = replace(
        "    url: https://two.example.org/news\n", "    urll: https://two.example.org/news\n"
    )
    _, error = problems(tmp_path, text)
    keys = {(p.key, p.line) for p in error.problems}
    assert ("sources[1].urll", line_with(text, "urll:")) in keys
    assert ("sources[1].url", line_with(text, "- id: two")) in keys  # and url is now missing
    assert "unknown key 'urll' (did you mean 'url'?)" in str(error)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = VALID + "sourcess: []\n"
    problem = one_problem(tmp_path, text, line=line_with(text, "sourcess"), key="sourcess")
    assert "did you mean 'sources'" in problem.message


FEED = "    kind: feed\n"  # anchors in VALID that a case appends a line to
OTHER = "    title: Other\n"
NAME = "    name: One\n"


@pytest.mark.parametrize(
    ("old", "new", "key", "hint"),
    [
        (FEED, FEED + "    interval: '60'\n", "sources[0].interval", "remove the quotes"),
        (FEED, FEED + "    interval: 2\n", "sources[0].interval", "between 5 and"),
        (FEED, FEED + "    allow_private_network: yes\n", "sources[0].allow_private_network",
         "YAML 1.1"),
        (FEED, "    kind: rss\n", "sources[0].kind", "unknown kind 'rss'"),
        (FEED, FEED + "    max_bytes: 1.5\n", "sources[0].max_bytes", "whole number"),
        (NAME, "    name: [One]\n", "sources[0].name", "expected a string, got a list"),
        (NAME, "    name:\n", "sources[0].name", "got an empty value"),
        (OTHER, OTHER + "    min_score: high\n", "sections[1].min_score", "expected a number"),
        (OTHER, OTHER + "    rules: training\n", "sections[1].rules", "expected a list"),
        (OTHER, OTHER + "    rules: [{term: a, regex: b}]\n", "sections[1].rules[0]",
         "exactly one of"),
        (OTHER, OTHER + "    rules: [{term: a, weight: 0}]\n", "sections[1].rules[0].weight",
         "between"),
        (OTHER, OTHER + "    exclude: ['***']\n", "sections[1].exclude[0]", "letters"),
        (OTHER, OTHER + "    rules: ['*tion']\n", "sections[1].rules[0]", "'*' may only end"),
    ],
)  # fmt: skip
def test_wrong_types_and_values(tmp_path: Path, old: str, new: str, key: str, hint: str) -> None:
    text = replace(old, new)
    marker = new.rstrip("\n").splitlines()[-1].strip()
    problem = one_problem(tmp_path, text, line=line_with(text, marker), key=key)
    assert hint in problem.message


def test_sources_must_be_a_list(tmp_path: Path) -> None:
    text = replace("sources:\n", "sources: {}\nunused:\n")
    _, error = problems(tmp_path, text)
    assert any(p.key == "sources" and "expected a list" in p.message for p in error.problems)


def test_missing_required_key(tmp_path: Path) -> None:
    text = replace("    url: https://one.example.org/feed\n", "")
    problem = one_problem(tmp_path, text, line=line_with(text, "- id: one"), key="sources[0].url")
    assert "missing required key 'url'" in problem.message


def test_missing_top_level_sections(tmp_path: Path) -> None:
    text = VALID.split("sections:")[0].replace("    section: training\n", "")
    one_problem(tmp_path, text, line=1, key="sections")


def test_duplicate_source_ids_name_both_lines(tmp_path: Path) -> None:
    text = replace("  - id: two\n", "  - id: one\n")
    second = line_with(text, "- id: one", nth=2)
    problem = one_problem(tmp_path, text, line=second, key="sources[1].id")
    assert (
        f"duplicate source id 'one' (first at line {line_with(text, '- id: one')})"
        in problem.message
    )


@pytest.mark.parametrize("bad", ["Police One", "UPPER", "-leading", "a" * 65, "'é'"])
def test_bad_source_id(tmp_path: Path, bad: str) -> None:
    text = replace("  - id: two\n", f"  - id: {bad}\n")
    problem = one_problem(tmp_path, text, line=line_with(text, f"id: {bad}"), key="sources[1].id")
    assert "lowercase letters" in problem.message


def test_duplicate_section_ids(tmp_path: Path) -> None:
    text = replace("  - id: other\n", "  - id: training\n")
    problem = one_problem(
        tmp_path, text, line=line_with(text, "- id: training", nth=2), key="sections[1].id"
    )
    assert "duplicate section id 'training'" in problem.message


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("ftp://one.example.org/feed", "only http:// and https://"),
        ("feed://one.example.org/feed", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("one.example.org/feed", "got no scheme"),
        ("https://user:s3cret@one.example.org/feed", "credentials"),
        ("https://user@one.example.org/feed", "credentials"),
        ("https:///feed", "no host"),
        ("https://one.example.org:99999/feed", "not a valid URL"),
        ("'https://one.example.org/a feed'", "spaces"),
    ],
)
def test_bad_source_urls(tmp_path: Path, url: str, hint: str) -> None:
    text = replace("https://one.example.org/feed", url)
    _, error = problems(tmp_path, text)
    assert len(error.problems) == 1
    problem = error.problems[0]
    assert (problem.line, problem.key) == (line_with(text, "url:"), "sources[0].url")
    assert hint in problem.message
    assert "s3cret" not in str(error), "a password must never be echoed"


def test_newsletter_link_must_be_http(tmp_path: Path) -> None:
    text = replace("https://news.example.org/", "mailto:news@example.org")
    one_problem(tmp_path, text, line=line_with(text, "link:"), key="newsletter.link")


def test_unknown_section_in_source(tmp_path: Path) -> None:
    text = replace("    section: training\n", "    section: trainng\n")
    problem = one_problem(tmp_path, text, line=line_with(text, "trainng"), key="sources[0].section")
    assert "unknown section 'trainng' (did you mean 'training'?)" in problem.message


@pytest.mark.parametrize(
    ("value", "hint"),
    [("America/New_Yrok", "did you mean 'America/New_York'"), ("Mars/Olympus", "unknown time zone"),
     ("../../etc/passwd", "unknown time zone")],
)  # fmt: skip
def test_bad_timezone(tmp_path: Path, value: str, hint: str) -> None:
    text = replace("America/New_York", value)
    problem = one_problem(
        tmp_path, text, line=line_with(text, "timezone:"), key="newsletter.timezone"
    )
    assert hint in problem.message


def test_missing_timezone(tmp_path: Path) -> None:
    text = replace("  timezone: America/New_York\n", "")
    # reported where the newsletter mapping starts (its first key)
    problem = one_problem(tmp_path, text, line=2, key="newsletter.timezone")
    assert "missing required key 'timezone'" in problem.message


def test_bad_selector(tmp_path: Path) -> None:
    text = replace(
        "    kind: page\n", "    kind: page\n    selectors: {item: 'div.teaser[', title: h3}\n"
    )
    problem = one_problem(
        tmp_path, text, line=line_with(text, "selectors:"), key="sources[1].selectors.item"
    )
    assert "invalid CSS selector" in problem.message


def test_selector_item_is_required_and_feeds_take_none(tmp_path: Path) -> None:
    text = replace("    kind: feed\n", "    kind: feed\n    selectors: {title: h3}\n")
    _, error = problems(tmp_path, text)
    keys = sorted(p.key for p in error.problems)
    assert keys == ["sources[0].selectors", "sources[0].selectors.item"]


def test_good_selectors(tmp_path: Path) -> None:
    text = replace(
        "    kind: page\n",
        "    kind: page\n    selectors: {item: article.teaser, link: 'a[href]'}\n",
    )
    source = load_config(write(tmp_path, text)).sources[1]
    assert source.selectors is not None
    assert (source.selectors.item, source.selectors.link, source.selectors.title) == (
        "article.teaser",
        "a[href]",
        None,
    )


@pytest.mark.parametrize("regex", ["'(unclosed'", "'[z-a]'", "'a|'", "'x*'"])
def test_bad_regex(tmp_path: Path, regex: str) -> None:
    text = replace("{regex: 'drills?', weight: 1.5}", f"{{regex: {regex}}}")
    problem = one_problem(
        tmp_path, text, line=line_with(text, "regex:"), key="sections[0].rules[2].regex"
    )
    assert "regular expression" in problem.message


def test_python_tag_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = replace(
        "  title: Test Weekly\n", f'  title: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    problem = one_problem(tmp_path, text, line=line_with(text, "!!python"), key="newsletter.title")
    assert "tag '!!python/object/apply:os.system' is not allowed" in problem.message
    assert not marker.exists()


def test_python_tag_at_top_level(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f'!!python/object/apply:os.system ["touch {marker}"]\n'
    problem = one_problem(tmp_path, text, line=1, key="")
    assert "not allowed" in problem.message
    assert not marker.exists()


def test_merge_keys_are_refused(tmp_path: Path) -> None:
    text = replace("    kind: page\n", "    <<: {kind: page}\n")
    one_problem(tmp_path, text, line=line_with(text, "<<"), key="sources[1]")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    problem = one_problem(tmp_path, text, line=1, key="")
    assert "empty" in problem.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    problem = one_problem(tmp_path, text, line=1, key="")
    assert "top level must be a mapping" in problem.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.yaml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_bytes(VALID.encode().replace(b"Test Weekly", b"Test \xff Weekly"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].line == 2


@pytest.mark.parametrize(
    ("value", "hint"),
    [("1 07:00", "weekday numbers are ambiguous"), ("0 7 * * 1", "weekday numbers"),
     ("mon 25:00", "not a time of day"), ("mondy 07:00", "did you mean 'monday'"),
     ("monday", "not a weekday and time")],
)  # fmt: skip
def test_bad_digest_schedule(tmp_path: Path, value: str, hint: str) -> None:
    text = VALID + f'schedule: {{digest: "{value}"}}\n'
    problem = one_problem(tmp_path, text, line=line_with(text, "schedule:"), key="schedule.digest")
    assert hint in problem.message


def test_bad_fetch_interval_and_sender(tmp_path: Path) -> None:
    text = VALID + "schedule: {fetch_interval: 1}\ndigest: {from: nobody}\n"
    _, error = problems(tmp_path, text)
    assert [(p.key, p.line) for p in error.problems] == [
        ("schedule.fetch_interval", line_with(text, "schedule:")),
        ("digest.from", line_with(text, "digest:")),
    ]


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    text = VALID
    text = replace("America/New_York", "Nowhere/Town", text)
    text = replace("    name: One\n", "    nam: One\n", text)
    text = replace("https://two.example.org/news", "ftp://two.example.org/news", text)
    text = replace("{regex: 'drills?', weight: 1.5}", "{regex: '(', weight: 1.5}", text)
    text = replace("    title: Other\n", "    title: Other\n    colour: red\n", text)
    path, error = problems(tmp_path, text)
    found = [(p.line, p.key) for p in error.problems]
    assert found == [
        (line_with(text, "timezone:"), "newsletter.timezone"),
        (line_with(text, "- id: one"), "sources[0].name"),
        (line_with(text, "nam: One"), "sources[0].nam"),
        (line_with(text, "ftp://"), "sources[1].url"),
        (line_with(text, "regex:"), "sections[0].rules[2].regex"),
        (line_with(text, "colour"), "sections[1].colour"),
    ]
    message = str(error)
    assert message.count(str(path)) == len(found)


def test_fetch_interval_is_the_default_interval_of_sources(tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "newsletter: {title: T, link: 'https://t.example.org/', description: d, timezone: UTC}\n"
        "storage: {database: 'sqlite:///a.db'}\noutput: {dir: out}\n"
        "schedule: {fetch_interval: 30}\n"
        "sources:\n"
        "  - {id: a, name: A, url: 'https://a.example.org/'}\n"
        "  - {id: b, name: B, url: 'https://b.example.org/', interval: 240}\n"
        "sections:\n  - {id: s, title: S}\n"
    )
    config = load_config(path)
    assert config.source("a").interval == timedelta(minutes=30)
    assert config.source("b").interval == timedelta(minutes=240)


@pytest.mark.parametrize(
    "sender", ["a@b.org, c@d.org", "Desk Bcc: x@evil <d@example.org>", "nobody", "A <a@>"]
)
def test_digest_from_must_be_one_mailbox(tmp_path, sender):
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "newsletter: {title: T, link: 'https://t.example.org/', description: d, timezone: UTC}\n"
        "storage: {database: 'sqlite:///a.db'}\noutput: {dir: out}\n"
        f"digest: {{from: '{sender}'}}\n"
        "sources:\n  - {id: a, name: A, url: 'https://a.example.org/'}\n"
        "sections:\n  - {id: s, title: S}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"{path}:4:" in str(e.value) and "digest.from" in str(e.value)


def test_fetch_retry_and_budget_keys(tmp_path):
    path = tmp_path / "feeds.yaml"
    base = (
        "newsletter: {title: T, link: 'https://t.example.org/', description: d, timezone: UTC}\n"
        "storage: {database: 'sqlite:///a.db'}\noutput: {dir: out}\n"
        "sources:\n  - {id: a, name: A, url: 'https://a.example.org/'}\n"
        "sections:\n  - {id: s, title: S}\n"
    )
    path.write_text(
        base + "fetch: {retry_delays: [1, 4.5], retry_jitter: 0.1, fetch_budget: 90,\n"
        "        max_header_bytes: 32768, parse_timeout: 5, parse_memory_mb: 256,\n"
        "        parse_workers: 1}\n"
    )
    fetch = load_config(path).fetch
    assert fetch.retry_delays == (1.0, 4.5) and fetch.retry_jitter == 0.1
    assert (fetch.fetch_budget, fetch.max_header_bytes) == (90, 32768)
    assert (fetch.parse_timeout, fetch.parse_memory_mb, fetch.parse_workers) == (5, 256, 1)
    path.write_text(base + "fetch: {retry_delays: [1, -2], retry_jitter: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "fetch.retry_delays[1]" in str(e.value) and "fetch.retry_jitter" in str(e.value)
