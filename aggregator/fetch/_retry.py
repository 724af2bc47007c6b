"""In-run retries of the fetch stage: which failures are worth another try, and when.

Imports only `exceptions` and `types`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from aggregator.exceptions import FetchError
from aggregator.types import FetchSettings

# A server or network hiccup: another try in a few seconds may well work. Everything else
# (other 4xx, TLS, a refused address, too large, a bot check, the deadline) would fail the
# same way again, or must not be hammered.
TRANSIENT_KINDS = frozenset({"connect", "connect_timeout", "read_timeout", "read_error"})
TRANSIENT_STATUSES = frozenset({502, 503, 504})


def is_transient(error: FetchError) -> bool:
    if error.kind in TRANSIENT_KINDS:
        return True
    return (
        error.kind == "http_status"
        and error.http_status in TRANSIENT_STATUSES
        and error.retry_after is None  # the server said when: the pipeline schedules that
    )


def retry_delay(
    attempt: int, settings: FetchSettings, uniform: Callable[[float, float], float] = random.uniform
) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, jittered; None when no retry is left."""
    if attempt < 1 or attempt > len(settings.retry_delays):
        return None
    base = settings.retry_delays[attempt - 1]
    jitter = max(0.0, min(settings.retry_jitter, 1.0))
    return max(0.0, base * uniform(1 - jitter, 1 + jitter))
