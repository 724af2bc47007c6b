"""Storage: the StorageType protocol and its SQLAlchemy Core implementation.

Knows nothing of the stages: imports only `types` and `exceptions` (and SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from aggregator.storage._sql import SqlStorage, SqlTransaction, open_storage
from aggregator.types import (
    Correction,  # issue 5
    Delivery,
    DeliveryStatus,
    FrozenStory,  # review finding 6
    Issue,
    Item,
    JobRun,
    NewSubscriber,
    Placement,
    SourceState,
    StoredItem,
    Story,
    StoryLink,
    StoryOverride,
    Subscriber,
    SubscriberStatus,
    WebEventKind,
)


class StoryTransactionType(Protocol):
    """Story clustering's writes (issue 4), inside a source's or an editor's transaction."""

    def set_story_links(self, links: Sequence[StoryLink], now: datetime) -> None: ...
    def add_story_links(self, links: Sequence[StoryLink], now: datetime) -> None: ...
    def move_items(self, moves: Mapping[int, int]) -> None: ...
    def add_story_override(
        self, kind: str, item_a: int, item_b: int, now: datetime
    ) -> StoryOverride: ...
    def set_item_vectors(self, model: str, vectors: Mapping[int, bytes]) -> None: ...


class TransactionType(StoryTransactionType, Protocol):  # + issue 4's writes
    """The writes of one source's update; all or nothing."""

    def get_item_ids(self, source_id: str, guids: Sequence[str]) -> dict[str, int]: ...
    def get_story_ids(self, keys: Sequence[str]) -> dict[str, int]: ...
    def add_story(self, first_seen: datetime) -> int: ...
    def add_item(
        self, item: Item, story_id: int, placement: Placement, first_seen: datetime
    ) -> int: ...
    def touch_items(self, ids: Sequence[int], now: datetime) -> None: ...
    def set_source_state(self, state: SourceState) -> None: ...
    # batched writes (issue 8): one statement per source on the hot path
    def add_stories(self, first_seen: datetime, count: int) -> list[int]: ...
    def set_source_states(self, states: Sequence[SourceState]) -> None: ...
    def add_items(
        self, rows: Sequence[tuple[Item, int, Placement]], first_seen: datetime
    ) -> None: ...


class StorageType(Protocol):
    url: str

    def close(self) -> None: ...
    def transaction(self) -> AbstractContextManager[TransactionType]: ...
    def get_source_states(self) -> dict[str, SourceState]: ...
    def set_source_state(self, state: SourceState) -> None: ...

    # classification (issue 5): one item, editors' corrections, re-classification
    def get_item(self, item_id: int) -> StoredItem | None: ...
    def add_correction(
        self, item_id: int, section: str | None, text: str, placement: Placement, now: datetime
    ) -> Correction | None: ...
    def get_corrections(self) -> list[Correction]: ...
    def set_placements(self, rows: Sequence[tuple[int, Placement]]) -> int: ...

    def get_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        section: str | None = None,
        source_id: str | None = None,
        limit: int | None = None,
    ) -> list[StoredItem]: ...
    def get_stories(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Story]: ...
    def iter_stories(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[Story]: ...
    def iter_story_outlines(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Story]: ...
    def get_stories_by_id(self, story_ids: Sequence[int]) -> dict[int, Story]: ...
    def count_items(self) -> int: ...
    def count_items_by_source(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        source_id: str | None = None,
    ) -> dict[str, int]: ...
    def get_item_spans(self) -> dict[str, tuple[datetime, datetime]]: ...

    # subscribers: never deleted, only their status changes
    def add_subscribers(
        self, rows: Sequence[NewSubscriber], now: datetime
    ) -> list[tuple[Subscriber, bool]]: ...
    def get_subscribers(self, *, status: SubscriberStatus | None = None) -> list[Subscriber]: ...
    def get_subscriber(self, address: str) -> Subscriber | None: ...
    def set_subscriber_status(
        self, address: str, status: SubscriberStatus, now: datetime
    ) -> Subscriber | None: ...

    # frozen issues (one per period) and the delivery ledger (one row per issue, subscriber)
    def get_issue(self, start: datetime, end: datetime) -> Issue | None: ...
    def get_issues(self) -> list[Issue]: ...
    def add_issue(
        self,
        start: datetime,
        end: datetime,
        *,
        subject: str,
        html: str,
        text: str,
        story_ids: Sequence[int],
        now: datetime,
        stories: Sequence[FrozenStory] = (),
    ) -> tuple[Issue, bool]: ...
    def add_deliveries(
        self, issue_id: int, subscriber_ids: Sequence[int], now: datetime
    ) -> int: ...
    def get_deliveries(
        self, issue_id: int, *, statuses: Sequence[DeliveryStatus] | None = None
    ) -> list[Delivery]: ...
    def set_delivery(
        self,
        issue_id: int,
        subscriber_id: int,
        status: DeliveryStatus,
        now: datetime,
        *,
        reply: str | None = None,
        attempted: bool = False,
    ) -> None: ...

    # story clustering (issue 4): one story, its members' links, editors' overrides
    def get_story(self, story_id: int) -> Story | None: ...
    def get_story_links(self, item_ids: Sequence[int]) -> dict[int, StoryLink]: ...
    def get_story_overrides(self) -> list[StoryOverride]: ...
    def get_item_vectors(self, model: str, item_ids: Sequence[int]) -> dict[int, bytes]: ...
    def get_items_by_id(self, item_ids: Sequence[int]) -> dict[int, StoredItem]: ...

    # the web front (issue 7): rate-limit events, scheduler job runs, lookups for /healthz
    def ping(self) -> None: ...
    def get_subscriber_by_id(self, subscriber_id: int) -> Subscriber | None: ...
    def add_web_event(self, kind: WebEventKind, key: str, now: datetime) -> None: ...
    def count_web_events(self, kind: WebEventKind, key: str, since: datetime) -> int: ...
    def add_web_event_if_below(
        self, kind: WebEventKind, key: str, now: datetime, *, since: datetime, limit: int
    ) -> bool: ...
    def get_sent_issues(
        self,
        until: datetime,
        *,
        limit: int | None = None,
        bodies: bool = True,
        number: int | None = None,
    ) -> list[Issue]: ...
    def delete_web_events(self, before: datetime) -> int: ...
    def set_job_run(self, run: JobRun) -> None: ...
    def get_job_runs(self) -> dict[str, JobRun]: ...


__all__ = ["SqlStorage", "SqlTransaction", "StorageType", "TransactionType", "open_storage"]
