"""aggregator: feeds and pages in, a weekly email digest and an RSS feed out.

The public API; the stages live in their own modules (see docs/design.md). The config,
pipeline and storage names are imported on first use (PEP 562), so that a parse worker,
which imports `aggregator.pipeline._prepare`, loads only the stages it runs (issue 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aggregator._lazy import lazy_names
from aggregator._version import __version__
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

if TYPE_CHECKING:  # for type checkers; at run time `__getattr__` imports each name
    from aggregator.config import load_config
    from aggregator.pipeline import (
        build_digest,
        build_feed,
        open_client,
        run_once,
        update_sources,
    )
    from aggregator.storage import StorageType, open_storage

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


# Where the names imported on first use are defined, searched in this order.
__getattr__, __dir__ = lazy_names(
    __name__, __all__, ("aggregator.config", "aggregator.pipeline", "aggregator.storage")
)
