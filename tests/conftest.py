"""Shared fixtures: the real-world corpus, a real HTTP server on 127.0.0.1, storage backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The corpus lives beside the checkout (../shared/corpus); a user's clone has none.
CORPUS = Path(os.environ.get("AGGREGATOR_CORPUS", ROOT.parent / "shared" / "corpus")).resolve()
SEED_ITEMS = CORPUS.parent / "examples" / "seed_items.yaml"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CORPUS.is_dir():
        return
    if IN_CI:
        # CI has ../shared beside the clone: a missing corpus there is a broken set-up, not a skip.
        raise pytest.UsageError(f"CI=true but the corpus is missing at {CORPUS}")
    skip = pytest.mark.skip(reason=f"needs the shared corpus at {CORPUS} (absent in a plain clone)")
    for item in items:
        if "corpus" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def corpus() -> Path:
    return CORPUS


# --- storage backends ---------------------------------------------------------------------

PG_URL = os.environ.get("AGGREGATOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("+psycopg", ""), connect_timeout=3):
            return True
    except Exception:  # any failure means "not here"; CI turns that into an error below
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    if not _pg_available():
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


@pytest.fixture
def pg_schema_url(pg_url: str):
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import uuid

    import sqlalchemy

    schema = "t_" + uuid.uuid4().hex[:12]
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'aggregator.db'}"
    return request.getfixturevalue("pg_schema_url")


# --- a real HTTP server -------------------------------------------------------------------


@pytest.fixture
def http_server():
    from tests.httpserver import Server

    with Server(CORPUS if CORPUS.is_dir() else None) as server:
        yield server


# --- a real SMTP server -------------------------------------------------------------------


@pytest.fixture
def smtp_server():
    from tests.smtpserver import SmtpServer

    with SmtpServer() as server:
        yield server
