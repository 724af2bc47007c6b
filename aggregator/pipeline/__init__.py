"""The composition root: the one place that wires the stages and the store together.

    Source -fetch-> Fetched -parse-> Entry -normalize-> Item -classify-> Placement
          -dedupe-> story -store-> ... -digest-> Digest -render-> files

Everything it needs comes in as arguments: the config, a storage, an HTTP client and `now`
(reader's `make_reader(..., _storage=...)` pattern), so tests pass fakes and a frozen clock.
A failing source becomes a SourceResult with its error; the run goes on. Nothing here
formats messages for people or exits: that is the cli package.

The names below are imported on first use (PEP 562, `__getattr__`): a parse worker imports
only `_prepare` and the stages it runs, not jinja2, SQLAlchemy, httpx and Starlette (issue 8:
each worker's memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aggregator._lazy import lazy_names

if TYPE_CHECKING:  # for type checkers; at run time `__getattr__` imports each name
    from aggregator.pipeline._cluster import (  # story clustering (issue 4)
        ReclusterReport,
        RunClusterer,
        merge_stories,
        ranked,
        ranking,
        recluster,
        split_story,
    )
    from aggregator.pipeline._examples import (  # issue 5
        correction_examples,
        load_examples,
        make_run_classifier,
        missing_example_files,
        read_example_file,
    )
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
    from aggregator.pipeline._prepare import Prepared, prepare_items  # the parse workers'
    from aggregator.pipeline._send import (
        MAX_ATTEMPTS,
        SendReport,
        check_before_send,
        freeze_issue,
        issue_section_counts,
        preview_issue,
        retry_due,
        send_issue,
        send_one,
        send_test_copy,
        signing_secret,
    )
    from aggregator.pipeline._sources import (
        HEALTH_ORDER,
        FeedCandidate,
        SourceHealth,
        UrlProbe,
        probe_url,
        source_health,
    )
    from aggregator.pipeline._store import store_items
    from aggregator.pipeline._timing import StageTimes
    from aggregator.pipeline._update import (
        MAX_BACKOFF,
        Progress,
        backoff,
        is_due,
        open_client,
        update_sources,
    )

    # the newsletter on the web (issue 7)
    from aggregator.pipeline._web import (
        EPOCH,
        FEED_PATHS,
        FEED_TYPES,
        ISSUES_FEED,
        ISSUES_FEED_LIMIT,
        FeedDoc,
        FeedKind,
        client_allowed,
        client_key,
        confirm_subscriber,
        confirmations_dir,
        find_section,
        issue_url,
        issues_updated,
        public_issue,
        public_issues,
        record_job_run,
        render_site_feed,
        render_site_issues_feed,
        request_subscription,
        send_confirmation,
        site_health,
        site_url,
        unsubscribe,
        unsubscribe_token_subscriber,
    )

__all__ = [
    "EPOCH",
    "FEED_FILE",
    "FEED_PATHS",
    "FEED_TYPES",
    "HEALTH_ORDER",
    "ISSUES_FEED",
    "ISSUES_FEED_LIMIT",
    "MAX_ATTEMPTS",
    "MAX_BACKOFF",
    "DigestFiles",
    "FeedCandidate",
    "FeedDoc",
    "FeedKind",
    "Prepared",
    "Progress",
    "ReclusterReport",
    "RunClusterer",
    "RunReport",
    "SendReport",
    "SourceHealth",
    "StageTimes",
    "UrlProbe",
    "backoff",
    "build_digest",
    "build_feed",
    "check_before_send",
    "client_allowed",
    "client_key",
    "confirm_subscriber",
    "confirmations_dir",
    "correction_examples",  # issue 5
    "digest_basename",
    "feed_self_url",
    "find_section",
    "freeze_issue",
    "is_due",
    "issue_section_counts",
    "issue_url",
    "issues_updated",
    "load_examples",  # issue 5
    "make_run_classifier",  # issue 5
    "merge_stories",
    "missing_example_files",  # issue 5
    "open_client",
    "prepare_items",
    "preview_issue",
    "probe_url",
    "public_issue",
    "public_issues",
    "ranked",
    "ranking",
    "read_example_file",  # issue 5
    "recluster",
    "record_job_run",
    "render_site_feed",
    "render_site_issues_feed",
    "request_subscription",
    "retry_due",
    "run_once",
    "send_confirmation",
    "send_issue",
    "send_one",
    "send_test_copy",
    "signing_secret",
    "site_health",
    "site_url",
    "source_health",
    "split_story",
    "store_items",
    "unsubscribe",
    "unsubscribe_token_subscriber",
    "update_sources",
]


# Where the public names are defined, searched in this order on first use.
__getattr__, __dir__ = lazy_names(
    __name__,
    __all__,
    tuple(
        f"{__name__}.{m}"
        for m in (
            "_prepare",
            "_cluster",
            "_examples",
            "_outputs",
            "_send",
            "_sources",
            "_store",
            "_timing",
            "_update",
            "_web",
        )
    ),
)
