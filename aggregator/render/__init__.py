"""Render stage: Digest -> HTML + plain text + .eml bytes; Stories -> RSS 2.0 bytes.

    make_environment(templates_dir)   the Jinja environment (editor's folder, then ours)
    render_digest(digest, env, ...)   -> Rendered(html, text, eml, subject)
    render_feed(stories, ...)         -> RSS 2.0 bytes
    render_atom / render_json_feed    -> Atom 1.0 / JSON Feed 1.1 bytes of the same stories
    render_issues_feed(issues, ...)   -> RSS 2.0, one item per frozen issue (issue_body: its
                                         sanitized HTML)
    safe_url / teaser / format_date / format_period / clean_header / xml_text: the filters
    and cleaners, for callers and tests

Safety rules this stage holds (FAULTS.md 3.3):
  R1  every template is rendered with `autoescape=True`, whatever its file name;
  R2  a URL reaches an `href` only through `safe_url` (http/https after WHATWG trimming);
  R5  the RSS is built with lxml after removing XML-invalid characters;
  R6  mail headers are built only from `clean_header` output, with email.policy.SMTP.

Pure apart from reading templates: it returns strings and bytes (`aggregator.output` writes
them), and takes `now` / `Digest.generated_at` instead of reading the clock.
Imports only `types` and `exceptions`; never fetch, parse, storage, pipeline, cli or config.
"""

from aggregator._mail import MAX_SUBJECT_CHARS, clean_header
from aggregator.render._atom import render_atom
from aggregator.render._digest import message_id, render_digest
from aggregator.render._environment import (
    DIGEST_HTML_TEMPLATE,
    DIGEST_TEXT_TEMPLATE,
    PROJECT_TEMPLATE_DIRS,
    TEMPLATES,
    check_templates,
    make_environment,
    render_template,
)
from aggregator.render._feed import DEFAULT_FEED_LIMIT, render_feed
from aggregator.render._feedkit import rfc3339
from aggregator.render._issues import issue_body, render_issues_feed
from aggregator.render._jsonfeed import JSON_FEED_VERSION, render_json_feed
from aggregator.render._text import (
    DEFAULT_TEASER_CHARS,
    TEXT_WIDTH,
    format_date,
    format_period,
    safe_url,
    teaser,
    xml_text,
)
from aggregator.render._views import OtherView, SectionView, StoryView

__all__ = [
    "DEFAULT_FEED_LIMIT",
    "DEFAULT_TEASER_CHARS",
    "DIGEST_HTML_TEMPLATE",
    "DIGEST_TEXT_TEMPLATE",
    "JSON_FEED_VERSION",
    "MAX_SUBJECT_CHARS",
    "PROJECT_TEMPLATE_DIRS",
    "TEMPLATES",
    "TEXT_WIDTH",
    "OtherView",
    "SectionView",
    "StoryView",
    "check_templates",
    "clean_header",
    "format_date",
    "format_period",
    "issue_body",
    "make_environment",
    "message_id",
    "render_atom",
    "render_digest",
    "render_feed",
    "render_issues_feed",
    "render_json_feed",
    "render_template",
    "rfc3339",
    "safe_url",
    "teaser",
    "xml_text",
]
