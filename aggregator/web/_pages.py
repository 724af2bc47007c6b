"""The web pages: Jinja templates in templates/web/ (an editor's output.templates folder may
override any of them), rendered with the render stage's environment (autoescape, strict).

Every function returns the page as a str; the app and the static export wrap it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup

from aggregator.exceptions import RenderError
from aggregator.pipeline import FEED_PATHS, FEED_TYPES, ISSUES_FEED
from aggregator.render import (
    format_date,
    format_period,
    issue_body,
    make_environment,
    render_template,
)
from aggregator.types import Config, Issue

STYLESHEET = "web/site.css"


@dataclass(frozen=True, slots=True)
class Site:
    """What every page's layout needs."""

    title: str
    description: str
    base: str  # the site's path prefix ("" at a host's root), for links
    dynamic: bool  # served by `aggregator serve` (forms work), not a static export
    feeds: tuple[dict[str, str], ...]


class Pages:
    """Renders the site's pages for one config."""

    def __init__(self, config: Config, *, dynamic: bool) -> None:
        self.config = config
        self.env: jinja2.Environment = make_environment(config.templates_dir)
        base = urlsplit(config.newsletter.link).path.rstrip("/")
        title = config.newsletter.title
        raw_feeds = (
            {"title": "RSS", "href": f"{base}/{FEED_PATHS['rss']}", "type": FEED_TYPES["rss"]},
            {"title": "Atom", "href": f"{base}/{FEED_PATHS['atom']}", "type": FEED_TYPES["atom"]},
            {
                "title": "JSON Feed",
                "href": f"{base}/{FEED_PATHS['json']}",
                "type": FEED_TYPES["json"],
            },
            {"title": "Issues", "href": f"{base}/{ISSUES_FEED}", "type": FEED_TYPES["rss"]},
        )
        feeds = tuple({**f, "type": f["type"].split(";")[0]} for f in raw_feeds)
        self.site = Site(title, config.newsletter.description, base, dynamic, feeds)

    @property
    def base(self) -> str:
        return self.site.base

    def _render(self, name: str, page_title: str, **context: Any) -> str:
        return render_template(
            self.env, f"web/{name}", {"site": self.site, "page_title": page_title, **context}
        )

    def stylesheet(self) -> str:
        loader = self.env.loader
        if loader is None:  # pragma: no cover - make_environment always sets one
            raise RenderError("no template loader")
        try:
            source, _, _ = loader.get_source(self.env, STYLESHEET)
        except jinja2.TemplateNotFound as e:
            raise RenderError(f"{STYLESHEET} not found in the templates folders") from e
        return source

    def issue(self, issue: Issue | None, issues: Sequence[Issue]) -> str:
        """An issue's page (None: the "nothing yet" page); `issues` newest first."""
        if issue is None:
            return self._render("issue.html.j2", self.config.newsletter.title, issue=None)
        tz = self.config.newsletter.timezone
        numbers = [i.number for i in issues]
        newer = min((n for n in numbers if n > issue.number), default=None)
        older = max((n for n in numbers if n < issue.number), default=None)
        # nh3 sanitized it (an allow-list, no script, no style): safe to insert as HTML.
        body = Markup(issue_body(issue.html))
        view = {
            "number": issue.number,
            "subject": issue.subject,
            "period": format_period(issue.start, issue.end, tz),
            "date": format_date(issue.created, tz),
            "body": body,
        }
        return self._render("issue.html.j2", issue.subject, issue=view, newer=newer, older=older)

    def archive(self, issues: Sequence[Issue]) -> str:
        tz = self.config.newsletter.timezone
        rows = [
            {
                "number": i.number,
                "subject": i.subject,
                "period": format_period(i.start, i.end, tz),
                "href": f"{self.base}/issues/{i.number}",
            }
            for i in issues
        ]
        return self._render("archive.html.j2", f"All issues: {self.site.title}", issues=rows)

    def subscribe(self, *, error: str = "", address: str = "") -> str:
        return self._render(
            "subscribe.html.j2", f"Subscribe: {self.site.title}", error=error, address=address
        )

    def message(
        self,
        heading: str,
        *lines: str,
        kind: str = "info",
        form: dict[str, Any] | None = None,
    ) -> str:
        return self._render(
            "message.html.j2",
            f"{heading}: {self.site.title}",
            heading=heading,
            lines=lines,
            kind=kind,
            form=form,
        )
