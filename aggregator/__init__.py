"""aggregator: feeds and pages in, a weekly email digest and an RSS feed out.

The public API; the stages live in their own modules (see docs/design.md).
"""

from aggregator._version import __version__
from aggregator.config import load_config
from aggregator.exceptions import (
    AggregatorError,
    ConfigError,
    DeliveryError,
    FetchError,
    ParseError,
    RenderError,
    SourceError,
    StorageError,
)
from aggregator.pipeline import build_digest, build_feed, open_client, run_once, update_sources
from aggregator.storage import StorageType, open_storage
from aggregator.types import (
    Config,
    Digest,
    Entry,
    Fetched,
    Item,
    Placement,
    Section,
    Source,
    SourceResult,
    StoredItem,
    Story,
)

__all__ = [
    "AggregatorError",
    "Config",
    "ConfigError",
    "DeliveryError",
    "Digest",
    "Entry",
    "FetchError",
    "Fetched",
    "Item",
    "ParseError",
    "Placement",
    "RenderError",
    "Section",
    "Source",
    "SourceError",
    "SourceResult",
    "StorageError",
    "StorageType",
    "StoredItem",
    "Story",
    "__version__",
    "build_digest",
    "build_feed",
    "load_config",
    "open_client",
    "open_storage",
    "run_once",
    "update_sources",
]
