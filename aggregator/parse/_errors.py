"""The parse stage's private failure signal: Fetched bytes -> (kind, message).

The private modules raise `Unreadable` because they only see bytes and a URL; the public
functions in `aggregator.parse` turn it into a `ParseError` carrying the source id and URL.
It never leaves the package. Must not import anything outside `aggregator.parse`.
"""

from __future__ import annotations

from typing import Literal

FailureKind = Literal["empty_body", "not_a_feed", "parse_error", "no_items"]


class Unreadable(Exception):
    """The bytes cannot be read as the expected kind of document."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        self.kind: FailureKind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")
