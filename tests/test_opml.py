"""opml: OPML bytes <-> subscriptions (pure), and `sources import-opml` / `export-opml`."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.cli import EXIT_OK, EXIT_USAGE, main
from aggregator.config import load_config
from aggregator.opml import MAX_OPML_BYTES, OpmlError, read_opml, render_opml
from aggregator.types import Source

NOW = datetime(2026, 11, 25, 15, tzinfo=UTC)

CONFIG = """\
# The editor's notes stay.
newsletter: {title: "T & Co", link: 'https://t.example.org/', description: d, timezone: UTC}
storage: {database: 'sqlite:///data/a.db'}
output: {dir: out}

sources:
  # Hand-written.
  - id: police1
    name: "Police1: De-escalation"
    url: https://www.police1.com/de-escalation
    kind: page
    section: training

  - id: crime-report
    name: The Crime Report
    url: https://thecrimereport.org/feed/

sections:
  - {id: training, title: Training & Tactics, rules: [training]}
  - {id: policy, title: Policy, rules: [policy]}
"""

NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0"><head><title>My reader</title></head><body>
  <outline text="Policy" title="Policy">
    <outline text="Gov" >
      <outline type="rss" text="Justice &amp; Gov" xmlUrl="https://justice.example.gov/rss.xml"
               htmlUrl="https://justice.example.gov/"/>
    </outline>
    <outline type="rss" text="Dup" xmlURL="HTTPS://thecrimereport.org/feed"/>
  </outline>
  <outline type="rss" title="Only a title" xmlUrl="https://blog.example.org/atom.xml"/>
  <outline text="Training &amp; Tactics">
    <outline type="rss" text="Drills" xmlUrl="https://drills.example.org/feed"/>
    <outline type="rss" text="Drills again" xmlUrl="https://drills.example.org/feed"/>
  </outline>
  <outline text="A bookmark" type="link" url="https://bookmark.example.org/"/>
  <outline type="rss" text="FTP" xmlUrl="ftp://files.example.org/feed"/>
</body></opml>"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_round_trip_keeps_ids_kinds_and_sections():
    sources = (
        Source("police1", "Police1: <De-escalation>", "https://p.example/x", kind="page",
               section="training"),
        Source("feed-a", "Feed A & B", "https://a.example/feed?x=1&y=2", kind="feed"),
        Source("feed-b", "Feed B", "https://b.example/rss"),
    )  # fmt: skip
    text = render_opml(sources, "T & Co", NOW)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml ')
    assert 'version="2.0"' in text and "<title>T &amp; Co</title>" in text
    assert 'type="rss"' in text and 'xmlUrl="https://a.example/feed?x=1&amp;y=2"' in text
    assert 'type="link" url="https://p.example/x"' in text and "feed readers cannot" in text
    back = read_opml(text.encode(), "out.opml")
    assert back.title == "T & Co" and back.skipped == ()
    assert [(s.source_id, s.title, s.url, s.kind, s.section) for s in back.subscriptions] == [
        (s.id, s.name, s.url, s.kind, s.section) for s in sources
    ]


def test_nested_outlines_are_flattened_with_their_folders():
    contents = read_opml(NESTED, "reader.opml")
    assert contents.title == "My reader"
    subs = {s.title: s for s in contents.subscriptions}
    assert list(subs) == ["Justice & Gov", "Dup", "Only a title", "Drills", "Drills again"]
    assert subs["Justice & Gov"].folders == ("Policy", "Gov")
    assert subs["Justice & Gov"].html_url == "https://justice.example.gov/"
    assert subs["Dup"].url == "HTTPS://thecrimereport.org/feed"  # xmlURL: any case
    assert subs["Only a title"].folders == () and subs["Drills"].kind == "auto"
    assert any("A bookmark" in s and "not a feed" in s for s in contents.skipped)
    assert any("ftp://" in s for s in contents.skipped)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"<opml><body><outline text='x'></body></opml>", "reader.opml:1: not well-formed"),
        (b"", "not well-formed"),
        (b"<rss version='2.0'><channel/></rss>", "not <opml>"),
        (b"<opml version='2.0'><head/></opml>", "no <body>"),
        (b"<opml>" + b" " * MAX_OPML_BYTES + b"</opml>", "byte limit"),
    ],
)
def test_malformed_opml_is_an_opml_error(data, needle):
    with pytest.raises(OpmlError, match=needle):
        read_opml(data, "reader.opml")


def test_external_entities_are_never_expanded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    for where in ("<title>&xxe;</title>", ""):
        attr = "" if where else ' text="&xxe;"'
        data = (
            f'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY xxe SYSTEM "file://{secret}">]>'
            f'<opml version="2.0"><head>{where}</head><body>'
            f'<outline type="rss"{attr} xmlUrl="https://e.org/feed"/></body></opml>'
        ).encode()
        with pytest.raises(OpmlError) as info:
            read_opml(data, "evil.opml")
        assert "TOP-SECRET" not in str(info.value)
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<opml><body><outline text="&b;" xmlUrl="https://e.org/"/></body></opml>'
    )
    with pytest.raises(OpmlError, match="DTD"):
        read_opml(bomb, "bomb.opml")


# --- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(CONFIG)
    return path


def test_export_opml(config, tmp_path):
    code, out, err = run("--config", str(config), "sources", "export-opml")
    assert code == EXIT_OK, err
    contents = read_opml(out.encode())
    assert [s.source_id for s in contents.subscriptions] == ["police1", "crime-report"]
    target = tmp_path / "sub.opml"
    code, out, _ = run("--config", str(config), "sources", "export-opml", "--out", str(target))
    assert code == EXIT_OK and "2 sources written" in out and target.read_text().startswith("<?xml")
    code, _, err = run(
        "--config", str(config), "sources", "export-opml", "--out", str(tmp_path / "no/x.opml")
    )
    assert code == 6 and err.startswith("aggregator: output: cannot write") and err.count("\n") == 1


def test_import_opml(config, tmp_path):
    opml = tmp_path / "reader.opml"
    opml.write_bytes(NESTED)
    before = config.read_text()
    code, out, err = run("--config", str(config), "sources", "import-opml", str(opml), "--dry-run")
    assert code == EXIT_OK, err
    assert "would add justice-example: Justice & Gov" in out and "-> policy" in out
    assert "skipped HTTPS://thecrimereport.org/feed: already in feeds.yaml as 'crime-report'" in out
    assert "would add drills-example: Drills <https://drills.example.org/feed> -> training" in out
    assert "drills.example.org/feed: already in feeds.yaml as 'drills-example'" in out
    assert "3 to add, 4 skipped; dry run" in out
    assert config.read_text() == before

    code, out, err = run("--config", str(config), "sources", "import-opml", str(opml))
    assert code == EXIT_OK, err
    after = config.read_text()
    assert after.startswith(before.split("\nsections:")[0])  # the editor's text, untouched
    assert after.endswith("\nsections:" + before.split("\nsections:")[1])
    loaded = load_config(config)
    assert [s.id for s in loaded.sources] == [
        "police1", "crime-report", "justice-example", "blog-example", "drills-example",
    ]  # fmt: skip
    assert loaded.source("justice-example").section == "policy"
    assert loaded.source("blog-example").section is None

    # Importing again adds nothing; --section files everything new there.
    code, out, _ = run("--config", str(config), "sources", "import-opml", str(opml))
    assert code == EXIT_OK and "0 to add" in out


def test_import_opml_errors_are_one_line(config, tmp_path):
    bad = tmp_path / "bad.opml"
    bad.write_bytes(b"<opml><body><outline></body>")
    for argv, needle in [
        ([str(bad)], "bad.opml:1: not well-formed XML"),
        ([str(tmp_path / "none.opml")], "cannot read"),
        ([str(bad), "--section", "nope"], "unknown section"),
    ]:
        code, _, err = run("--config", str(config), "sources", "import-opml", *argv)
        assert code == EXIT_USAGE, argv
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err
