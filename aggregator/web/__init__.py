"""The newsletter on the web: an ASGI app (Starlette) and a static export.

    make_app(config, storage, clock=..., secret=...)   feeds, archive, subscribe, unsubscribe
    publish_site(config, storage, out_dir, now)        the same public site as files

Sits on top of `pipeline` (like `cli`): it reads and writes the store only through pipeline
functions, and never imports `cli` or `scheduler`. See docs/web.md.
"""

from aggregator.web._app import make_app
from aggregator.web._publish import publish_site, site_files
from aggregator.web._security import CONTENT_SECURITY_POLICY, SECURITY_HEADERS

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "make_app",
    "publish_site",
    "site_files",
]
