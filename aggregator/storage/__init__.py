"""Storage: the StorageType protocol and its SQLAlchemy Core implementation.

Knows nothing of the stages: imports only `types` and `exceptions` (and SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from aggregator.storage._sql import SqlStorage, SqlTransaction, open_storage
from aggregator.types import (
    Delivery,
    DeliveryStatus,
    Issue,
    Item,
    NewSubscriber,
    Placement,
    SourceState,
    StoredItem,
    Story,
    Subscriber,
    SubscriberStatus,
)


class TransactionType(Protocol):
    """The writes of one source's update; all or nothing."""

    def get_item_ids(self, source_id: str, guids: Sequence[str]) -> dict[str, int]: ...
    def get_story_ids(self, keys: Sequence[str]) -> dict[str, int]: ...
    def add_story(self, first_seen: datetime) -> int: ...
    def add_item(
        self, item: Item, story_id: int, placement: Placement, first_seen: datetime
    ) -> int: ...
    def touch_items(self, ids: Sequence[int], now: datetime) -> None: ...
    def set_source_state(self, state: SourceState) -> None: ...


class StorageType(Protocol):
    url: str

    def close(self) -> None: ...
    def transaction(self) -> AbstractContextManager[TransactionType]: ...
    def get_source_states(self) -> dict[str, SourceState]: ...
    def set_source_state(self, state: SourceState) -> None: ...
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


__all__ = ["SqlStorage", "SqlTransaction", "StorageType", "TransactionType", "open_storage"]
