"""Mail header helpers shared by config (checks `digest.from`) and render (builds headers).

Imports nothing from the package.
"""

from __future__ import annotations

import unicodedata
from email.headerregistry import Address, AddressHeader
from email.policy import SMTP

MAX_SUBJECT_CHARS = 200

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_header(value: str, limit: int = MAX_SUBJECT_CHARS) -> str:
    """`value` made safe for a mail header (FAULTS R6).

    Every line separator `str.splitlines` knows (Zl, Zp and the Cc ones), every C0/C1
    control and every lone surrogate (unencodable) becomes a space; `=?` can no longer start
    an RFC 2047 encoded word (CPython 3.11.7 decodes those into real newlines when the header
    is set: CVE-2024-6923); whitespace is collapsed and the result capped at `limit` chars.
    """
    chars = (
        " " if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI else c
        for c in value
    )
    text = " ".join("".join(chars).split()).replace("=?", "= ?")
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    return text


def parse_mailbox(value: str) -> Address | None:
    """One mail address ("Name <addr@host>" or "addr@host"), or None.

    The header registry's strict parser, not `parseaddr`: "Desk Bcc: x@evil <d@example.org>"
    is a group to it (a defect), where parseaddr quietly returns x@evil.
    """
    try:
        header = SMTP.header_factory("From", clean_header(value))
    except (IndexError, ValueError):  # CPython 3.11's parser crashes on "ann@" (no domain)
        return None
    addresses = header.addresses if isinstance(header, AddressHeader) else ()
    if header.defects or len(addresses) != 1 or not addresses[0].domain:
        return None
    return Address(clean_header(addresses[0].display_name), addr_spec=addresses[0].addr_spec)
