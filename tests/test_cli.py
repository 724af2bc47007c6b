"""cli: argv in, exit code and output out."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator import cli
from aggregator.cli import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_SOURCES,
    EXIT_STORAGE,
    EXIT_USAGE,
    main,
    make_parser,
    parse_time,
)
from tests.httpserver import static

ROOT = Path(__file__).resolve().parent.parent
RSS = (
    b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
    b"<item><guid>1</guid><link>https://e.org/1</link><title>Police training day</title></item>"
    b"</channel></rss>"
)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def write_config(tmp_path: Path, sources: str, database: str = "sqlite:///data/a.db") -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "newsletter: {title: T, link: 'https://t.example.org/', description: d, "
        "timezone: Europe/Berlin}\n"
        f"storage: {{database: '{database}'}}\n"
        "output: {dir: out}\n"
        "fetch: {allow_private_network: true, connect_timeout: 1, read_timeout: 1, deadline: 2}\n"
        f"sources:\n{sources}"
        "sections:\n  - {id: training, title: Training, rules: [training]}\n"
    )
    return path


def test_every_command_has_help():
    import argparse

    parser = make_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(helps) == {
        "check", "fetch", "items", "feed", "digest", "run", "sources", "subscribers",
        "serve", "publish",  # web (issue 7)
        "explain", "classify", "review", "eval", "examples", "reclassify",  # issue 5
        "stories",  # issue 4
    }  # fmt: skip
    assert all(helps.values())
    actions = next(a for a in sub.choices["sources"]._actions if a.dest == "action")
    assert {a.dest: a.help for a in actions._choices_actions}.keys() == {
        "test", "add", "export-opml", "import-opml"
    }  # fmt: skip

    def check(name: str, subparser: argparse.ArgumentParser) -> None:
        for action in subparser._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.dest}"
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), name
                for child, childparser in action.choices.items():
                    check(f"{name} {child}", childparser)

    for name, subparser in sub.choices.items():
        check(name, subparser)


def test_help_and_version_exit_zero(capsys):
    assert main(["--help"]) == 0
    assert "digest" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert main(["nonsense"]) == EXIT_USAGE


def test_check_passes_on_the_shipped_feeds_yaml():
    code, out, err = run("--config", str(ROOT / "feeds.yaml"), "check")
    assert code == EXIT_OK, err
    assert "ok:" in out and "8 sections" in out
    # the next three digest times, on Mondays at 07:00 in the newsletter's zone (FAULTS K6)
    [line] = [x for x in out.splitlines() if x.startswith("digest (mon 07:00): next ")]
    assert line.count("Mon 20") == 3 and line.count("07:00 E") == 3


def test_check_lists_every_problem_with_file_line_and_key(tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "newsletter: {title: T, link: 'https://t.example.org/', description: d,\n"
        "  timezone: Mars/Base}\n"
        "storage: {database: 'sqlite:///a.db'}\n"
        "output: {dir: out}\n"
        "sources:\n"
        "  - {id: a, name: A, urll: 'https://a.example.org/'}\n"
        "  - {id: b, name: B, url: 'ftp://b.example.org/'}\n"
        "sections:\n  - {id: s, title: S}\n"
    )
    code, _, err = run("--config", str(path), "check")
    assert code == EXIT_CONFIG
    assert f"{path}:2:" in err and "timezone" in err
    assert f"{path}:6:" in err and "urll" in err and "did you mean 'url'" in err
    assert f"{path}:7:" in err and "ftp" in err
    assert "nothing was fetched" in err
    assert "Traceback" not in err


def test_missing_config_is_a_config_error(tmp_path):
    code, _, err = run("--config", str(tmp_path / "nope.yaml"), "check")
    assert code == EXIT_CONFIG and "nope.yaml" in err


def test_usage_errors_are_one_line(tmp_path):
    config = write_config(tmp_path, "  - {id: a, name: A, url: 'https://a.example.org/'}\n")
    for argv, needle in [
        (["items", "--section", "nope"], "unknown section"),
        (["digest", "--since", "last tuesday"], "cannot read time"),
        (["digest", "--since", "2026-11-20", "--until", "2026-11-10"], "must be before"),
        (["fetch", "--source", "ghost"], "unknown source"),
    ]:
        code, _, err = run("--config", str(config), *argv)
        assert code == EXIT_USAGE, argv
        assert needle in err and err.count("\n") == 1, err


def test_storage_error_exit_code(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = write_config(
        tmp_path,
        "  - {id: a, name: A, url: 'https://a.example.org/'}\n",
        database=f"sqlite:///{blocker}/sub/a.db",
    )
    code, _, err = run("--config", str(config), "items")
    assert code == EXIT_STORAGE and "storage:" in err and "Traceback" not in err


def test_fetch_items_feed_digest(tmp_path, http_server):
    http_server.routes["/ok.xml"] = static(RSS)
    config = write_config(
        tmp_path,
        f"  - {{id: ok, name: OK, url: '{http_server.url('/ok.xml')}'}}\n"
        f"  - {{id: gone, name: Gone, url: '{http_server.url('/gone.xml')}'}}\n",
    )
    code, out, err = run("--config", str(config), "fetch")
    assert code == EXIT_SOURCES
    assert "ok " in out and "gone " in out and "2 sources, 1 new items, 1 failed" in out
    assert "gone" in err and "http_status" in err and "404" in err

    code, out, _ = run("--config", str(config), "fetch")
    assert code == EXIT_OK and "no sources were due" in out

    code, out, _ = run("--config", str(config), "items", "--json")
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["source"] == "ok" and row["section"] == "training" and row["story"] >= 1
    assert row["url"] == "https://e.org/1" and row["first_seen"]

    code, out, _ = run("--config", str(config), "items", "--since", "1d", "--section", "training")
    assert code == EXIT_OK and "Police training day" in out

    code, out, _ = run("--config", str(config), "feed", "--out", str(tmp_path / "elsewhere"))
    assert code == EXIT_OK and (tmp_path / "elsewhere" / "feed.xml").is_file()

    code, out, _ = run("--config", str(config), "digest", "--since", "1d")
    assert code == EXIT_OK and "1 stories" in out
    assert len(list((tmp_path / "out").glob("digest-*"))) == 3


def test_parse_time():
    from datetime import UTC, datetime

    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert parse_time("2026-11-23", "America/New_York", now) == datetime(
        2026, 11, 23, 5, tzinfo=UTC
    )
    assert parse_time("2026-11-23T07:00", "UTC", now) == datetime(2026, 11, 23, 7, tzinfo=UTC)
    assert parse_time("2026-11-23T07:00Z", "America/New_York", now).hour == 7
    assert parse_time("2d", "UTC", now) == datetime(2026, 11, 28, 12, tzinfo=UTC)
    with pytest.raises(cli.UsageError):
        parse_time("yesterday", "UTC", now)


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(ROOT / "feeds.yaml"), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_check_compiles_the_editors_template_overrides(tmp_path):
    config = write_config(tmp_path, "  - {id: a, name: A, url: 'https://a.example.org/'}\n")
    (tmp_path / "mytemplates").mkdir()
    (tmp_path / "mytemplates" / "digest.txt.j2").write_text("{% for x in %}broken")
    text = config.read_text().replace(
        "output: {dir: out}", "output: {dir: out, templates: mytemplates}"
    )
    config.write_text(text)
    code, _, err = run("--config", str(config), "check")
    assert code == cli.EXIT_OUTPUT and "digest.txt.j2" in err and "Traceback" not in err


def test_until_alone_is_a_local_week(tmp_path):
    config = write_config(tmp_path, "  - {id: a, name: A, url: 'https://a.example.org/'}\n")
    # Europe/Berlin leaves summer time on 25 October 2026: still Monday to Monday, week-named.
    code, out, err = run("--config", str(config), "digest", "--until", "2026-11-02")
    assert code == EXIT_OK, err
    assert "2026-10-26 00:00 to 2026-11-02 00:00" in out and "digest-2026-W44.html" in out


def test_items_piped_into_head_is_not_an_error(tmp_path, http_server):
    # Enough output to fill the pipe, so the writer meets the closed end.
    many = "".join(
        f"<item><guid>{n}</guid><link>https://e.org/{n}</link><title>Police item {n}</title>"
        f"<description>{'text ' * 60}</description></item>"
        for n in range(800)
    )
    http_server.routes["/ok.xml"] = static(
        (
            "<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
            f"{many}</channel></rss>"
        ).encode()
    )
    config = write_config(
        tmp_path, f"  - {{id: ok, name: OK, url: '{http_server.url('/ok.xml')}'}}\n"
    )
    assert run("--config", str(config), "fetch")[0] == EXIT_OK
    result = subprocess.run(
        f"'{sys.executable}' -m aggregator --config '{config}' items --json | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.stdout == "{"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
