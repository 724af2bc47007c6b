"""`aggregator serve` (the site over HTTP, uvicorn) and `aggregator publish` (the site as files).

See docs/web.md for running `serve` behind a reverse proxy.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aggregator import pipeline
from aggregator.cli._common import EXIT_OK, UsageError, open_store
from aggregator.types import Config

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _now() -> datetime:
    return datetime.now(UTC)


def cmd_serve(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    import uvicorn

    from aggregator.web import make_app

    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a TCP port (1-65535)")
    secret = pipeline.signing_secret(config)
    if not secret:
        what = (
            f"environment variable {config.delivery.unsubscribe_secret_env} is not set"
            if config.delivery and config.delivery.unsubscribe_secret_env
            else "feeds.yaml has no delivery.unsubscribe_secret_env"
        )
        err.write(
            f"aggregator: serve: {what}: /subscribe and /unsubscribe answer 503 "
            "(feeds and pages work)\n"
        )
    storage = open_store(config, _now())
    try:
        app = make_app(config, storage, clock=_now, secret=secret)
        out.write(f"serving {config.newsletter.title} on http://{args.host}:{args.port}/\n")
        out.flush()
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            proxy_headers=True,
            forwarded_allow_ips=args.forwarded_allow_ips,
            server_header=False,
            log_level=args.log_level,
        )
    finally:
        storage.close()
    return EXIT_OK


def cmd_publish(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    from aggregator.web import publish_site

    now = _now()
    storage = open_store(config, now)
    try:
        paths = publish_site(config, storage, args.out or config.output_dir, now)
    finally:
        storage.close()
    out.write(f"published {len(paths)} files to {args.out or config.output_dir}\n")
    return EXIT_OK


def add_serve_parsers(sub: Any) -> None:
    """`serve` and `publish`, on the main parser's subparsers."""
    p = sub.add_parser(
        "serve",
        help="serve the feeds, the issue archive, subscribe and unsubscribe over HTTP",
        description="An ASGI app (Starlette on uvicorn) over the same store and feeds.yaml. "
        "Put it behind a reverse proxy for TLS (docs/web.md).",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on ({DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    p.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        metavar="IPS",
        help="proxies whose X-Forwarded-For/-Proto are trusted (comma-separated; default "
        "127.0.0.1)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (info)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "publish",
        help="write the whole public site (feeds, archive, issue pages) for a static server",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: output.dir)")
    p.set_defaults(func=cmd_publish)
