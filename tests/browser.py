"""Debian's chromium for the browser tests: where it is, how it is started, and what a test
module does when it is missing (skip with the reason; in CI, where .ci/run installs it, an
error). Never a Playwright browser download."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import IN_CI

CHROMIUM = next(
    (
        p
        for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
        if p and Path(p).exists()
    ),
    None,
)
# As root, headless, and quiet on a machine without a network: without the background
# networking flags chromium keeps trying (and failing) to reach Google's hosts.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"


def missing_reason(extra: str = "") -> str:
    """Why a browser test cannot run here ("" when it can); in CI that is an error."""
    reason = MISSING if CHROMIUM is None else extra
    if reason and IN_CI:
        raise RuntimeError(f"CI=true but the browser test cannot run: {reason}")
    return reason
