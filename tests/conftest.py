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
