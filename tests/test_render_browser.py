"""The digest on a phone: no horizontal scrolling at 375 px, checked in headless Chromium.

Needs Debian's `chromium` (`apt-get install chromium`); skipped with that reason when it is
absent, an error in CI (CI=true), where .ci/run installs it. Screenshots at 375 px and
1024 px are saved under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import re
import subprocess
from html import escape
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, missing_reason
from tests.browser import FLAGS as BROWSER_FLAGS
from tests.test_render import PYTHON, SECURITY, make_digest, make_item, make_story, render

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [*BROWSER_FLAGS, "--hide-scrollbars"]
_MISSING = missing_reason()

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_MISSING), reason=_MISSING)]


def hostile_digest_html() -> str:
    """A full digest with what overflows narrow layouts: long words, long URLs, many others."""
    long_word = "Deescalation" * 12
    long_url = "https://example.org/" + "very-long-path-segment/" * 12 + "?q=" + "x" * 80
    others = tuple(make_item(100 + k, source="hn", link=long_url) for k in range(6))
    stories = (
        make_story(1, title=f"A headline with an unbreakable {long_word} word", summary=long_word),
        make_story(2, link=long_url, summary=f"See {long_url} for the report. " * 3),
        make_story(3, others=others, title="Crisis teams " * 12),
    )
    more = tuple(make_story(10 + n, source="ars", section="python") for n in range(8))
    return render(make_digest((SECURITY, stories), (PYTHON, more, 4))).html


def harness(html: str, width: int, height: int) -> str:
    """The digest in an iframe `width` px wide: headless Chromium's window is at least 500 px,
    so a phone is emulated by the frame; its media queries see the frame's width."""
    return (
        "<!doctype html><html><body style='margin:0'>"
        f"<iframe id='f' style='width:{width}px;height:{height}px;border:0' "
        f'srcdoc="{escape(html, quote=True)}"></iframe>'
        "<script>window.addEventListener('load', function () {"
        " var d = document.getElementById('f').contentDocument.documentElement;"
        " document.body.setAttribute('data-scroll-width', String(d.scrollWidth)); });"
        "</script></body></html>"
    )


def chromium(args: list[str], user_data: Path) -> str:
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={user_data}", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout


def scroll_width(html: str, width: int, folder: Path) -> int:
    page = folder / f"probe-{width}.html"
    page.write_text(harness(html, width, 900))
    dom = chromium(["--window-size=1100,900", "--dump-dom", page.as_uri()], folder / "profile")
    match = re.search(r'data-scroll-width="(\d+)"', dom)
    assert match, dom[-500:]
    return int(match.group(1))


def screenshot(html: str, width: int, out: Path, folder: Path) -> None:
    page = folder / f"shot-{width}.html"
    page.write_text(harness(html, width, 2400))
    size = f"--window-size={max(width, 500)},2400"
    chromium([size, f"--screenshot={out}", page.as_uri()], folder / "profile")
    assert out.is_file() and out.stat().st_size > 1000


def test_digest_fits_a_375px_screen_and_screenshots_are_saved(tmp_path: Path) -> None:
    html = hostile_digest_html()
    assert scroll_width(html, 375, tmp_path) <= 375
    assert scroll_width(html, 1024, tmp_path) <= 1024
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (375, 1024):
        screenshot(html, width, ARTIFACTS / f"digest-{width}.png", tmp_path)
