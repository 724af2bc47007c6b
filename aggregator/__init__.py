"""aggregator: feeds and pages in, a weekly email digest and an RSS feed out.

The public API; the stages live in their own modules (see docs/design.md). The config,
pipeline and storage names are imported on first use (PEP 562), so that a parse worker,
which imports `aggregator.pipeline._prepare`, loads only the stages it runs (issue 8).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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


# The modules that define the names imported on first use.
_LAZY = {
    "load_config": "aggregator.config",
    "build_digest": "aggregator.pipeline",
    "build_feed": "aggregator.pipeline",
    "open_client": "aggregator.pipeline",
    "run_once": "aggregator.pipeline",
    "update_sources": "aggregator.pipeline",
    "StorageType": "aggregator.storage",
    "open_storage": "aggregator.storage",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up finds it directly
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
