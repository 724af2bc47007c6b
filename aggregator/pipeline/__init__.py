"""The composition root: the one place that wires the stages and the store together.

    Source -fetch-> Fetched -parse-> Entry -normalize-> Item -classify-> Placement
          -dedupe-> story -store-> ... -digest-> Digest -render-> files

Everything it needs comes in as arguments: the config, a storage, an HTTP client and `now`
(reader's `make_reader(..., _storage=...)` pattern), so tests pass fakes and a frozen clock.
A failing source becomes a SourceResult with its error; the run goes on. Nothing here
formats messages for people or exits: that is the cli package.
"""

from aggregator.pipeline._outputs import (
    FEED_FILE,
    DigestFiles,
    RunReport,
    build_digest,
    build_feed,
    digest_basename,
    feed_self_url,
    run_once,
)
from aggregator.pipeline._send import (
    MAX_ATTEMPTS,
    SendReport,
    check_before_send,
    freeze_issue,
    issue_section_counts,
    preview_issue,
    retry_due,
    send_issue,
    send_test_copy,
)
from aggregator.pipeline._sources import (
    HEALTH_ORDER,
    FeedCandidate,
    SourceHealth,
    UrlProbe,
    probe_url,
    source_health,
)
from aggregator.pipeline._update import (
    MAX_BACKOFF,
    Prepared,
    Progress,
    backoff,
    is_due,
    open_client,
    prepare_items,
    store_items,
    update_sources,
)

__all__ = [
    "FEED_FILE",
    "HEALTH_ORDER",
    "MAX_ATTEMPTS",
    "MAX_BACKOFF",
    "DigestFiles",
    "FeedCandidate",
    "Prepared",
    "Progress",
    "RunReport",
    "SendReport",
    "SourceHealth",
    "UrlProbe",
    "backoff",
    "build_digest",
    "build_feed",
    "check_before_send",
    "digest_basename",
    "feed_self_url",
    "freeze_issue",
    "is_due",
    "issue_section_counts",
    "open_client",
    "prepare_items",
    "preview_issue",
    "probe_url",
    "retry_due",
    "run_once",
    "send_issue",
    "send_test_copy",
    "source_health",
    "store_items",
    "update_sources",
]
