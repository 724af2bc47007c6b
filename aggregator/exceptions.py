"""The exceptions `aggregator` raises.

    AggregatorError
     ├── ConfigError            feeds.yaml is wrong (carries every problem found)
     ├── SourceError            one source failed; carries source_id, url and a kind
     │    ├── FetchError        network, HTTP, size, not-modified-but-unknown ...
     │    └── ParseError        bytes that are not a feed / page we can read
     ├── StorageError           the database refused or is unreachable
     ├── RenderError            a template is missing or broken
     ├── DeliveryError          writing or sending the digest failed
     │    └── IssueHeld         a pre-send check failed: nothing was sent (carries the reasons)
     └── SchedulerLocked        another scheduler (or sender) runs on the same database

A foreign exception is wrapped once, where the library is called, with `raise ... from e`.
Anything that is not an AggregatorError is a bug and propagates.
Must not import anything from the package.
"""

from __future__ import annotations

from dataclasses import dataclass


class AggregatorError(Exception):
    """Root of every error `aggregator` means to raise."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the config: where it is and what to do."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(AggregatorError):
    """feeds.yaml is invalid; `problems` lists every problem found, in file order."""

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem) -> None:
        self.problems = [problems] if isinstance(problems, ConfigProblem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SourceError(AggregatorError):
    """One source failed at one stage; the run goes on without it.

    `kind` is a short stable word (timeout, connect, dns, tls, http_status, too_large,
    not_a_feed, empty_body, parse_error, ...) for machines; the message is for people.
    """

    stage = "source"

    def __init__(
        self,
        source_id: str,
        url: str,
        kind: str,
        message: str,
        *,
        http_status: int | None = None,
    ) -> None:
        self.source_id = source_id
        self.url = url
        self.kind = kind
        self.message = message
        self.http_status = http_status
        super().__init__(f"{source_id} ({url}): {kind}: {message}")


class FetchError(SourceError):
    """A source could not be fetched.

    `retry_after`: seconds the server asked us to wait (429/503 Retry-After, capped at 24 h),
    counted from the response; the next attempt should not come sooner. `attempts`: how many
    requests this fetch made before giving up (in-run retries included).
    """

    stage = "fetch"

    def __init__(
        self,
        source_id: str,
        url: str,
        kind: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(source_id, url, kind, message, http_status=http_status)
        self.retry_after = retry_after
        self.attempts = attempts


class ParseError(SourceError):
    stage = "parse"


class StorageError(AggregatorError):
    """The database failed; the message names the operation and the database."""


class RenderError(AggregatorError):
    """A template is missing, broken, or produced invalid output."""


class DeliveryError(AggregatorError):
    """Writing or sending a rendered digest failed."""


class IssueHeld(DeliveryError):
    """A pre-send check failed: the issue is held, nothing was sent, the ledger is untouched."""

    def __init__(self, issue_number: int, reasons: list[str]) -> None:
        self.issue_number = issue_number
        self.reasons = list(reasons)
        super().__init__(
            f"issue {issue_number} held: "
            + "; ".join(self.reasons)
            + " (fix it, or send anyway with --force)"
        )


class SchedulerLocked(AggregatorError):
    """Another process holds a lock on this database: a second `aggregator run`, or a second
    sender of an issue (`digest --send` beside another, or beside the weekly job)."""
