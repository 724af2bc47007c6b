"""Digest -> HTML (CSS inlined) + plain text + a multipart/alternative .eml.

Mail headers are built only from `clean_header` output, with email.policy.SMTP (FAULTS R6).
Imports only `types`, `exceptions` and the render stage's own modules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import css_inline
import jinja2

from aggregator._mail import clean_header, parse_mailbox
from aggregator.exceptions import RenderError
from aggregator.render._environment import (
    DIGEST_HTML_TEMPLATE,
    DIGEST_TEXT_TEMPLATE,
    render_template,
)
from aggregator.render._text import (
    DEFAULT_TEASER_CHARS,
    TEXT_WIDTH,
    aware,
    format_period,
    host_of,
)
from aggregator.render._views import SectionView, story_view
from aggregator.types import Digest, Newsletter, Rendered

_INLINER = css_inline.CSSInliner(
    keep_at_rules=True,  # @media rules cannot be inlined: they stay in a <style> in <head>
    # An editor's <link rel=stylesheet> must not make the renderer fetch URLs.
    load_remote_stylesheets=False,
)


def render_digest(
    digest: Digest,
    env: jinja2.Environment,
    *,
    source_urls: Mapping[str, str] | None = None,
    sender: str = "",
    teaser_chars: int = DEFAULT_TEASER_CHARS,
) -> Rendered:
    """The digest as HTML (CSS inlined), plain text, subject and .eml bytes.

    Sections keep the order of `digest.sections`; empty ones are left out; no stories at all
    gives a "No new stories this week" digest. `source_urls` (id -> feed/page URL) is offered
    to the templates. `sender` is the From: address ("Name <addr>" or "addr"); empty means
    "<newsletter title> <noreply@host of the newsletter link>". The .eml is
    multipart/alternative, text/plain first, with no To: (delivery adds recipients).
    """
    newsletter = digest.newsletter
    names = dict(digest.source_names)
    urls = dict(source_urls or {})
    titles = {ds.section.id: ds.section.title for ds in digest.sections}
    sections = tuple(
        SectionView(
            id=ds.section.id,
            title=ds.section.title,
            description=ds.section.description,
            stories=tuple(story_view(s, names, urls, titles) for s in ds.stories),
            more=ds.more,
        )
        for ds in digest.sections
        if ds.stories
    )
    # "Top stories" (issue 4): the best-ranked stories of the period, any section.
    top = tuple(story_view(s, names, urls, titles) for s in digest.top)
    period = format_period(digest.start, digest.end, newsletter.timezone)
    subject = clean_header(f"{newsletter.title} \u2014 {period}")
    # keep in sync with the context list at the top of templates/digest.html.j2
    context = {
        "newsletter": newsletter,
        "subject": subject,
        "period": period,
        "timezone": newsletter.timezone,
        "sections": sections,
        "top": top,
        "story_count": sum(len(s.stories) for s in sections),
        "teaser_chars": teaser_chars,
        "generated_at": aware(digest.generated_at),
        "text_width": TEXT_WIDTH,
    }
    html = render_template(env, DIGEST_HTML_TEMPLATE, context)
    try:
        html = _INLINER.inline(html)
    except css_inline.InlineError as e:
        raise RenderError(
            f"template {DIGEST_HTML_TEMPLATE!r}: its CSS cannot be inlined: {e}"
        ) from e
    text = render_template(env, DIGEST_TEXT_TEMPLATE, context)
    eml = _eml(digest, subject, _sender(sender, newsletter), text, html)
    return Rendered(html=html, text=text, eml=eml, subject=subject)


def _sender(sender: str, newsletter: Newsletter) -> Address:
    if not sender:
        addr = f"noreply@{host_of(newsletter.link)}"
        return Address(clean_header(newsletter.title), addr_spec=addr)
    mailbox = parse_mailbox(sender)
    if mailbox is None:
        raise RenderError(f"sender {sender!r} is not one mail address like 'Name <addr@host>'")
    return mailbox


def message_id(digest: Digest) -> str:
    """The Message-ID of a digest: the same newsletter and period give the same id, so a
    re-render (or a resend after a crash, FAULTS P2) is recognisably the same message."""
    start, end = aware(digest.start).astimezone(UTC), aware(digest.end).astimezone(UTC)
    key = f"{digest.newsletter.link}\n{start.isoformat()}\n{end.isoformat()}"
    digest_hash = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return f"<digest.{start:%Y%m%d}.{digest_hash}@{host_of(digest.newsletter.link)}>"


def _eml(digest: Digest, subject: str, sender: Address, text: str, html: str) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["Subject"] = subject
    msg["Date"] = format_datetime(aware(digest.generated_at))
    msg["Message-ID"] = message_id(digest)
    # Quoted-printable keeps the file 7-bit (any relay takes it) and readable as text.
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    # A boundary from the content instead of a random one, so the same digest gives the same
    # bytes. "=_" never occurs in a quoted-printable body, so it cannot collide.
    body_hash = hashlib.sha256(f"{text}\0{html}".encode()).hexdigest()[:32]
    msg.set_boundary(f"=_aggregator_{body_hash}")
    return msg.as_bytes()
