"""The Jinja environment of the render stage: where templates are found, how they escape.

Templates (editors may change them) live in `templates/` of a checkout, or in
`aggregator/_templates` of an installed wheel (pyproject.toml force-includes them there).
An editor's `templates_dir` is searched first, so one overridden file wins and the rest
fall through to ours. Imports only `exceptions` and the render stage's own modules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from aggregator.exceptions import RenderError
from aggregator.render._text import format_date, safe_url, teaser, wrap

DIGEST_HTML_TEMPLATE = "digest.html.j2"
DIGEST_TEXT_TEMPLATE = "digest.txt.j2"
TEMPLATES = (DIGEST_HTML_TEMPLATE, DIGEST_TEXT_TEMPLATE)

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # aggregator/
# An installed wheel has the templates inside the package; a checkout has them beside it.
PROJECT_TEMPLATE_DIRS = (_PACKAGE_DIR / "_templates", _PACKAGE_DIR.parent / "templates")


def _finalize(value: Any) -> Any:
    # `{{ story.link | safe_url }}` of an unsafe link is None: print nothing, not "None".
    return "" if value is None else value


def project_templates() -> Path | None:
    """The folder of the templates shipped with the project, or None if it is missing."""
    return next((d for d in PROJECT_TEMPLATE_DIRS if d.is_dir()), None)


def make_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """The one Jinja environment every template is rendered with.

    `autoescape=True` for every template, not by file extension (FAULTS R1): an editor's
    `digest.htm` is escaped too. The plain-text template opts out explicitly with
    `{% autoescape false %}`. An undefined name is an error, not an empty string.
    Search order: `templates_dir` (an editor's overrides), then the project's templates.
    """
    search: list[Path] = []
    if templates_dir is not None:
        if not templates_dir.is_dir():
            raise RenderError(f"templates folder {templates_dir} does not exist or is not a folder")
        search.append(templates_dir)
    project = project_templates()
    if project is not None:
        search.append(project)
    elif templates_dir is None:
        looked = " and ".join(str(d) for d in PROJECT_TEMPLATE_DIRS)
        raise RenderError(f"the project's templates are missing (looked in {looked})")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search, encoding="utf-8"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(safe_url=safe_url, teaser=teaser, format_date=format_date, wrap=wrap)
    return env


def _where(env: jinja2.Environment) -> str:
    loader = env.loader
    if isinstance(loader, jinja2.FileSystemLoader):
        return ", ".join(str(p) for p in loader.searchpath)
    return repr(loader)


def get_template(env: jinja2.Environment, name: str) -> jinja2.Template:
    """`env.get_template(name)`, with a RenderError that names the template and its folders."""
    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound as e:
        raise RenderError(f"template {name!r} not found (looked in {_where(env)})") from e
    except jinja2.TemplateSyntaxError as e:
        where = f"{e.filename or name}:{e.lineno}"
        raise RenderError(f"template {name!r} is broken: {where}: {e.message}") from e


# A lone surrogate (from a broken feed, if normalize let one through) cannot be encoded in
# UTF-8: css-inline and the mail encoder would raise on it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    """The template's output, encodable as UTF-8; RenderError naming the template on failure."""
    template = get_template(env, name)
    try:
        text = template.render(context)
    except jinja2.TemplateError as e:  # an undefined name, a wrong filter argument ...
        where = template.filename or f"{name} ({_where(env)})"
        raise RenderError(f"template {name!r} failed: {where}: {e}") from e
    return _SURROGATE.sub("\ufffd", text)


def check_templates(env: jinja2.Environment) -> None:
    """Compile every template the digest needs; RenderError for the first bad one.
    For start-up, so that a broken edit shows before the week's digest is due."""
    for name in TEMPLATES:
        get_template(env, name)
