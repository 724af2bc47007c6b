"""`aggregator publish --out DIR`: the whole public site as files for any static web server.

Feeds, the archive and the issue pages, exactly as `serve` answers them (the subscription
pages need the server and are left out; the pages then link no form). Written with
`output.write_outputs` (atomic per file, names checked to stay inside DIR).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from aggregator import pipeline
from aggregator.output import write_outputs
from aggregator.storage import StorageType
from aggregator.types import Config
from aggregator.web._pages import Pages


def site_files(config: Config, storage: StorageType, now: datetime) -> dict[str, bytes | str]:
    """name -> content of every public file. Issue pages are `issues/<n>.html`: most static
    servers (GitHub Pages, Netlify, nginx with `try_files $uri $uri.html`) answer
    /issues/<n> with it, so links are the same as under `serve`."""
    pages = Pages(config, dynamic=False)
    issues = pipeline.public_issues(storage, now, bodies=True)
    files: dict[str, bytes | str] = {}
    for kind, name in pipeline.FEED_PATHS.items():
        files[name] = pipeline.render_site_feed(config, storage, kind, now).body
    for section in config.sections:
        doc = pipeline.render_site_feed(config, storage, "rss", now, section=section)
        files[f"sections/{section.id}.xml"] = doc.body
    files[pipeline.ISSUES_FEED] = pipeline.render_site_issues_feed(config, storage, now).body
    files["index.html"] = pages.issue(issues[0] if issues else None, issues)
    files["issues/index.html"] = pages.archive(issues)
    for issue in issues:
        files[f"issues/{issue.number}.html"] = pages.issue(issue, issues)
    files["static/site.css"] = pages.stylesheet()
    return files


def publish_site(config: Config, storage: StorageType, out_dir: Path, now: datetime) -> list[Path]:
    """Write the site under `out_dir`; the written paths."""
    return write_outputs(out_dir, site_files(config, storage, now))
