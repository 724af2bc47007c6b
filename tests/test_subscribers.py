"""Subscribers: the pure address/CSV stage and the `aggregator subscribers` commands."""

from __future__ import annotations

import csv
import io
import json

import pytest

from aggregator.subscribers import (
    SubscriberError,
    normalize_address,
    read_subscriber_csv,
    write_subscriber_csv,
)
from tests.test_cli import run, write_config

SOURCE = "  - {id: s, name: S, url: 'http://127.0.0.1:9/feed'}\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ann@Example.ORG", ("ann@example.org", "")),
        ("Ann <Ann@Example.org>", ("Ann@example.org", "Ann")),
        ('"Smith, Ann" <ann@example.org>', ("ann@example.org", "Smith, Ann")),
    ],
)
def test_normalize_address(raw, expected):
    assert normalize_address(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ann",
        "ann@",
        "@example.org",
        "ann@localhost",
        "a@example.org, b@example.org",
        "Desk Bcc: x@evil.org <d@example.org>",
        "ann@example.org\r\nBcc: x@evil.org",
        "group: a@example.org;",
        "ann smith@example.org",
    ],
)
def test_bad_addresses_are_refused(raw):
    with pytest.raises(SubscriberError):
        normalize_address(raw)


def test_csv_roundtrip_merges_duplicates_and_reports_every_bad_line():
    text = "Address,Name,Sections\nann@example.org,Ann,training\nANN@example.org,Annie,\n"
    [row] = read_subscriber_csv(text, ["training"])
    assert row.address == "ANN@example.org" and row.name == "Annie" and row.sections == ()
    with pytest.raises(SubscriberError) as e:
        read_subscriber_csv("address,status\nnope,active\nb@example.org,gone\n", ["training"])
    assert "line 2" in str(e.value) and "line 3" in str(e.value)
    with pytest.raises(SubscriberError, match="address"):
        read_subscriber_csv("email\nann@example.org\n", [])


def test_export_is_readable_back():
    from datetime import UTC, datetime

    from aggregator.types import Subscriber

    now = datetime(2026, 11, 30, tzinfo=UTC)
    subs = [Subscriber(1, "a@example.org", "A, B", "bounced", ("training",), now, now)]
    [row] = read_subscriber_csv(write_subscriber_csv(subs), ["training"])
    assert (row.address, row.name, row.status, row.sections) == (
        "a@example.org", "A, B", "bounced", ("training",)
    )  # fmt: skip


def test_export_defuses_spreadsheet_formulas_and_reads_them_back():
    from datetime import UTC, datetime

    from aggregator.types import Subscriber

    now = datetime(2026, 11, 30, tzinfo=UTC)
    # "=cmd@..." is a valid address the public subscribe form accepts.
    address, _ = normalize_address("=cmd@evil.example.org")
    subs = [
        Subscriber(1, address, "+1 555", "active", (), now, now),
        Subscriber(2, "b@example.org", "-Bob", "active", (), now, now),
        Subscriber(3, "c@example.org", "@carol", "active", (), now, now),
        Subscriber(4, "d@example.org", "Dee", "active", (), now, now),
    ]
    text = write_subscriber_csv(subs)
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row[:2]]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells), cells
    assert "'=cmd@evil.example.org" in cells and "Dee" in cells
    rows = read_subscriber_csv(text, [])
    assert [(r.address, r.name) for r in rows] == [
        ("=cmd@evil.example.org", "+1 555"),
        ("b@example.org", "-Bob"),
        ("c@example.org", "@carol"),
        ("d@example.org", "Dee"),
    ]


def test_subscribers_commands(tmp_path):
    config = str(write_config(tmp_path, SOURCE))
    code, out, _ = run("--config", config, "subscribers", "add", "Ann@Example.org", "--name", "Ann")
    assert code == 0 and "added Ann@example.org" in out
    code, out, _ = run(
        "--config", config, "subscribers", "add", "ann@example.org", "--section", "training"
    )
    assert code == 0 and "already subscribed" in out
    code, _, err = run("--config", config, "subscribers", "add", "x@y.org", "--section", "nope")
    assert code == 2 and "unknown section" in err
    code, _, err = run("--config", config, "subscribers", "add", "not an address")
    assert code == 2 and "not one mail address" in err
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("address,name\nbo@example.org,Bo\nann@example.org,\n")
    code, out, _ = run("--config", config, "subscribers", "import", str(csv_in))
    assert code == 0 and "1 new, 1 merged" in out
    code, out, _ = run("--config", config, "subscribers", "remove", "BO@example.org")
    assert code == 0 and "unsubscribed" in out
    code, _, err = run("--config", config, "subscribers", "remove", "zed@example.org")
    assert code == 2
    code, out, _ = run("--config", config, "subscribers", "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["address"], r["name"], r["status"], r["sections"]) for r in rows] == [
        ("Ann@example.org", "Ann", "active", ["training"]),
        ("bo@example.org", "Bo", "unsubscribed", []),
    ]
    code, out, _ = run("--config", config, "subscribers", "add", "bo@example.org")
    assert code == 0 and "reactivated" in out
    export = tmp_path / "out.csv"
    code, _, _ = run("--config", config, "subscribers", "export", str(export))
    assert code == 0 and export.read_text().startswith("address,name,status,sections")
    bad = tmp_path / "bad.csv"
    bad.write_text("address\nnope\n")
    code, _, err = run("--config", config, "subscribers", "import", str(bad))
    assert code == 2 and "line 2" in err and "nothing was imported" in err
