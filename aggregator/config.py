"""The config stage: feeds.yaml -> Config (frozen), every problem found up front.

`load_config(path)` reads the file once, composes it with PyYAML's SafeLoader (nodes only: no
tag can construct a Python object) and validates the whole tree before anything runs. Every
problem is collected and raised together as one `ConfigError`, each `ConfigProblem` naming the
file, the line and the key path (`sources[3].url`) with a hint.

Relative paths (sqlite database, output dir, templates dir) are resolved against the folder
of the config file; nothing is created here (the pipeline makes the folders it writes to).

Imports `types`, `exceptions` and `_yaml_nodes` only; must not import fetch, parse, storage,
pipeline or cli (nor any other stage).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar, cast, get_args

import soupsieve
import yaml

from aggregator._labelled import parse_examples  # issue 5
from aggregator._mail import parse_mailbox
from aggregator._yaml_nodes import NodeReader, join, suggest
from aggregator.exceptions import ConfigError, ConfigProblem
from aggregator.types import (
    DEFAULT_MAX_BYTES,
    DEFAULT_SMTP_PORTS,
    ClassifySettings,
    ClusterSettings,
    Config,
    DeliverySettings,
    DigestSettings,
    FetchSettings,
    Newsletter,
    Rule,
    Schedule,
    Section,
    Selectors,
    SmtpSettings,
    Source,
    SourceKind,
    Topic,
    WebSettings,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DIGEST_RE = re.compile(r"([A-Za-z]+)\s+([0-9]{1,2}):([0-9]{2})")
_WORD_RE = re.compile(r"\w")
_BAD_STAR_RE = re.compile(r"\*(?=[\w*])|(?<!\w)\*")

_TOP_KEYS = (
    "newsletter", "storage", "output", "fetch", "schedule", "digest", "topic", "sources",
    "sections", "delivery",
    "web",  # issue 7
    "classify",  # issue 5
    "clustering",  # issue 4
)  # fmt: skip
_DELIVERY_KEYS = (
    "mode", "from", "reply_to", "smtp", "rate_per_minute", "timeout", "unsubscribe_secret_env",
    "min_stories", "max_lateness_hours",
)  # fmt: skip
_SMTP_KEYS = ("host", "port", "security", "username_env", "password_env")
_WEB_KEYS = ("confirm_hours", "per_address_per_day", "per_client_per_hour", "max_body_bytes")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TOP_REQUIRED = ("newsletter", "storage", "output", "sources", "sections")
_SOURCE_KEYS = (
    "id", "name", "url", "kind", "interval", "section", "max_bytes", "allow_private_network",
    "selectors",
    "weight",  # issue 4
)  # fmt: skip
_SECTION_KEYS = ("id", "title", "description", "min_score", "rules", "exclude")
_FETCH_KEYS = (
    "allow_private_network", "connect_timeout", "read_timeout", "deadline", "max_redirects",
    "concurrency", "per_host", "user_agent", "retry_delays", "retry_jitter", "fetch_budget",
    "max_header_bytes", "parse_timeout", "parse_memory_mb", "parse_workers",
)  # fmt: skip
_SELECTOR_KEYS = ("item", "title", "link", "summary", "date")
_CLASSIFY_KEYS = ("examples", "model", "review_below", "use_corrections")  # issue 5
_CLASSIFY_MODELS = ("auto", "tfidf", "embeddings", "rules")  # issue 5
_CLUSTERING_KEYS = (  # issue 4
    "enabled", "window_days", "threshold", "semantic", "semantic_threshold", "top_stories",
    "half_life_hours", "outlet_bonus",
)  # fmt: skip

# Minutes. A source polled more often than every 5 minutes is abusive; weekly is the slowest
# that still makes sense for a weekly digest.
_MIN_INTERVAL, _MAX_SOURCE_INTERVAL, _MAX_FETCH_INTERVAL = 5, 7 * 24 * 60, 24 * 60


def load_config(path: Path | str) -> Config:
    """Read and validate feeds.yaml; raise ConfigError listing every problem found."""
    path = Path(path)
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        problem = ConfigProblem(file, None, "", f"cannot read the config file: {e.strerror or e}")
        raise ConfigError(problem) from e
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            ConfigProblem(file, line, "", "the file is not UTF-8 text; save it as UTF-8")
        ) from e

    reader = NodeReader(file)
    root = reader.compose(text)
    if root is None:
        if not reader.problems:
            reader.add(
                1, "", "the file is empty; start from the feeds.yaml shipped with aggregator"
            )
        raise ConfigError(reader.sorted_problems())
    config = _ConfigBuilder(reader, path.absolute()).build(root)
    if reader.problems or config is None:
        raise ConfigError(reader.sorted_problems())
    return config


T = TypeVar("T")


def _all_or_none(
    items: list[yaml.Node], path: str, read: Callable[[yaml.Node, str], T | None]
) -> tuple[T, ...] | None:
    """Read every item of a sequence (each reporting its own problems); None if any failed."""
    values = [read(item, join(path, i)) for i, item in enumerate(items)]
    if any(v is None for v in values):
        return None
    return tuple(cast(list[T], values))


class _ConfigBuilder:
    def __init__(self, reader: NodeReader, path: Path) -> None:
        self.r = reader
        self.path = path
        self.base = path.parent
        self.explicit_interval: set[str] = set()  # ids of sources that set `interval`

    def build(self, root: yaml.Node) -> Config | None:
        r = self.r
        if not r.tag_ok(root, ""):
            return None
        if not isinstance(root, yaml.MappingNode):
            r.add(
                root, "", "the top level must be a mapping (newsletter:, sources:, sections: ...)"
            )
            return None
        top = r.mapping(root, "", keys=_TOP_KEYS, required=_TOP_REQUIRED)
        if top is None:
            return None
        newsletter = self.newsletter(top["newsletter"]) if "newsletter" in top else None
        database = self.storage(top["storage"]) if "storage" in top else None
        output = self.output(top["output"]) if "output" in top else None
        fetch = self.fetch(top["fetch"]) if "fetch" in top else FetchSettings()
        schedule = self.schedule(top["schedule"]) if "schedule" in top else Schedule()
        digest = self.digest(top["digest"]) if "digest" in top else DigestSettings()
        topic = self.topic(top["topic"]) if "topic" in top else Topic()
        delivery = self.delivery(top["delivery"]) if "delivery" in top else None
        if "delivery" in top and delivery is None and not r.problems:
            r.add(top["delivery"], "delivery", "invalid delivery settings")
        web = self.web(top["web"]) if "web" in top else WebSettings()  # issue 7
        # issue 5: the learned layer of the classifier
        classify = self.classify(top["classify"]) if "classify" in top else ClassifySettings()
        # issue 4: story clustering and ranking
        clustering = self.clustering(top["clustering"]) if "clustering" in top else None
        if "clustering" in top and clustering is None and not r.problems:
            r.add(top["clustering"], "clustering", "invalid clustering settings")
        section_ids: dict[str, int] | None = None
        sections: tuple[Section, ...] | None = None
        if "sections" in top:
            sections, section_ids = self.sections(top["sections"])
        sources = self.sources(top["sources"], section_ids) if "sources" in top else None
        if classify is not None and section_ids is not None:  # issue 5
            self.check_examples(classify, top.get("classify", root), section_ids)
        if sources is not None and schedule is not None:
            # A source without its own `interval` is polled every `schedule.fetch_interval`.
            sources = tuple(
                s
                if s.id in self.explicit_interval
                else replace(s, interval=schedule.fetch_interval)
                for s in sources
            )

        parts = (newsletter, database, output, fetch, schedule, digest, topic, sections, sources)
        if r.problems or any(p is None for p in parts) or web is None or classify is None:
            return None
        assert newsletter and database and output and sections and sources
        assert fetch and schedule and digest and topic
        return Config(
            path=self.path,
            newsletter=newsletter,
            database=database,
            output_dir=output[0],
            templates_dir=output[1],
            sources=sources,
            sections=sections,
            topic=topic,
            fetch=fetch,
            schedule=schedule,
            digest=digest,
            delivery=delivery,
            web=web,
            classify=classify,  # issue 5
            clustering=clustering or ClusterSettings(),  # issue 4
        )

    # --- newsletter, storage, output ------------------------------------------------------

    def newsletter(self, node: yaml.Node) -> Newsletter | None:
        r, p = self.r, "newsletter"
        keys = ("title", "link", "description", "timezone")
        m = r.mapping(node, p, keys=keys, required=("title", "link", "timezone"))
        if m is None:
            return None
        title = r.string(m["title"], join(p, "title"), max_len=200) if "title" in m else None
        link = self.r.url(m["link"], join(p, "link")) if "link" in m else None
        description = ""
        if "description" in m:
            description = (
                r.string(m["description"], join(p, "description"), single_line=False) or ""
            )
        tz = self.r.timezone(m["timezone"], join(p, "timezone")) if "timezone" in m else None
        if title is None or link is None or tz is None:
            return None
        return Newsletter(title=title, link=link, description=description.strip(), timezone=tz)

    def storage(self, node: yaml.Node) -> str | None:
        m = self.r.mapping(node, "storage", keys=("database",), required=("database",))
        if m is None or "database" not in m:
            return None
        return self.database(m["database"], "storage.database")

    def database(self, node: yaml.Node, path: str) -> str | None:
        raw = self.r.string(node, path)
        if raw is None:
            return None
        scheme, sep, rest = raw.partition("://")
        scheme = scheme.lower()
        usage = "use sqlite:///relative/path.db, sqlite:////absolute/path.db or postgresql://..."
        if not sep:
            self.r.add(node, path, f"not a database URL; {usage}")
            return None
        if scheme == "sqlite":
            if rest == "":
                return "sqlite://"  # in memory
            file, qmark, query = rest[1:].partition("?")
            if not rest.startswith("/") or not file:
                self.r.add(
                    node, path, f"a sqlite URL needs a file path after 'sqlite:///'; {usage}"
                )
                return None
            if file == ":memory:" or file.startswith("/"):
                return raw
            resolved = os.path.normpath(self.base / file)
            return f"sqlite:///{Path(resolved).as_posix()}{qmark}{query}"
        if scheme in ("postgresql", "postgresql+psycopg"):
            if not rest:
                self.r.add(node, path, "a postgresql URL needs a host or a database name")
                return None
            return f"postgresql+psycopg://{rest}"  # psycopg 3 is the driver we ship
        if scheme == "postgres" or scheme.startswith("postgresql+"):
            self.r.add(
                node, path, f"use postgresql://... (psycopg 3 is the driver), not {scheme}://"
            )
            return None
        self.r.add(node, path, f"unsupported database '{scheme}://'; {usage}")
        return None

    def output(self, node: yaml.Node) -> tuple[Path, Path | None] | None:
        r = self.r
        m = r.mapping(node, "output", keys=("dir", "templates"), required=("dir",))
        if m is None or "dir" not in m:
            return None
        out = r.string(m["dir"], "output.dir")
        templates: Path | None = None
        if "templates" in m:
            raw = r.string(m["templates"], "output.templates")
            if raw is None:
                return None
            templates = self.local_path(raw)
            if not templates.is_dir():
                r.add(m["templates"], "output.templates", f"no such folder: {templates}")
                return None
        return None if out is None else (self.local_path(out), templates)

    def local_path(self, raw: str) -> Path:
        return Path(os.path.normpath(self.base / Path(raw).expanduser()))

    # --- fetch, schedule, digest ----------------------------------------------------------

    def fetch(self, node: yaml.Node) -> FetchSettings | None:
        r, p = self.r, "fetch"
        m = r.mapping(node, p, keys=_FETCH_KEYS)
        if m is None:
            return None
        values: dict[str, object] = {}
        for key in ("connect_timeout", "read_timeout", "deadline", "parse_timeout"):
            if key in m:
                values[key] = r.number(m[key], join(p, key), low=0.1, high=600)
        if "fetch_budget" in m:
            values["fetch_budget"] = r.number(
                m["fetch_budget"], "fetch.fetch_budget", low=1, high=3600
            )
        if "retry_jitter" in m:
            values["retry_jitter"] = r.number(
                m["retry_jitter"], "fetch.retry_jitter", low=0, high=1
            )
        if "retry_delays" in m:
            values["retry_delays"] = self.retry_delays(m["retry_delays"], "fetch.retry_delays")
        limits = {
            "max_redirects": (0, 20),
            "concurrency": (1, 256),
            "per_host": (1, 32),
            "max_header_bytes": (4096, 1 << 20),
            "parse_memory_mb": (64, 16384),
            "parse_workers": (0, 64),
        }
        for key, (low, high) in limits.items():
            if key in m:
                values[key] = r.integer(m[key], join(p, key), low=low, high=high)
        if "allow_private_network" in m:
            values["allow_private_network"] = r.boolean(
                m["allow_private_network"], p + ".allow_private_network"
            )
        if "user_agent" in m:
            values["user_agent"] = r.string(m["user_agent"], join(p, "user_agent"), max_len=300)
        if any(v is None for v in values.values()):
            return None
        return FetchSettings(**values)  # type: ignore[arg-type]

    def retry_delays(self, node: yaml.Node, path: str) -> tuple[float, ...] | None:
        """In-run retry delays in seconds: at most 5, each 0-300."""
        items = self.r.sequence(node, path)
        if items is None:
            return None
        if len(items) > 5:
            self.r.add(node, path, f"at most 5 retries, got {len(items)}")
            return None
        return _all_or_none(items, path, lambda item, at: self.r.number(item, at, low=0, high=300))

    def schedule(self, node: yaml.Node) -> Schedule | None:
        r, p = self.r, "schedule"
        m = r.mapping(node, p, keys=("digest", "fetch_interval"))
        if m is None:
            return None
        digest: str | None = Schedule().digest_cron
        if "digest" in m:
            digest = self.digest_time(m["digest"], join(p, "digest"))
        interval: int | None = int(Schedule().fetch_interval.total_seconds() // 60)
        if "fetch_interval" in m:
            interval = r.integer(
                m["fetch_interval"],
                p + ".fetch_interval",
                low=_MIN_INTERVAL,
                high=_MAX_FETCH_INTERVAL,
            )
        if digest is None or interval is None:
            return None
        return Schedule(digest_cron=digest, fetch_interval=timedelta(minutes=interval))

    def digest_time(self, node: yaml.Node, path: str) -> str | None:
        """'Monday 7:00' -> 'mon 07:00' (weekday, 24-hour time, in the newsletter's zone)."""
        raw = self.r.string(node, path)
        if raw is None:
            return None
        example = "write a weekday name and a 24-hour time, like 'mon 07:00'"
        match = _DIGEST_RE.fullmatch(raw)
        if match is None:
            if re.match(r"[0-9]+\s+[0-9]", raw):
                self.r.add(
                    node, path, f"weekday numbers are ambiguous (is 0 Sunday or Monday?); {example}"
                )
            else:
                self.r.add(node, path, f"'{raw}' is not a weekday and time; {example}")
            return None
        day, hour, minute = match[1].lower(), int(match[2]), int(match[3])
        if day in _FULL_WEEKDAYS:
            day = day[:3]
        if day not in WEEKDAYS:
            hint = suggest(day, WEEKDAYS + _FULL_WEEKDAYS) or f" (one of {', '.join(WEEKDAYS)})"
            self.r.add(node, path, f"unknown weekday '{match[1]}'{hint}")
            return None
        if hour > 23 or minute > 59:
            self.r.add(node, path, f"'{match[2]}:{match[3]}' is not a time of day (00:00 to 23:59)")
            return None
        return f"{day} {hour:02d}:{minute:02d}"

    def digest(self, node: yaml.Node) -> DigestSettings | None:
        r, p = self.r, "digest"
        m = r.mapping(node, p, keys=("max_per_section", "teaser_chars", "feed_items", "from"))
        if m is None:
            return None
        values: dict[str, object] = {}
        limits = {
            "max_per_section": (1, 1000),
            "teaser_chars": (0, 10_000),
            "feed_items": (1, 10_000),
        }
        for key, (low, high) in limits.items():
            if key in m:
                values[key] = r.integer(m[key], join(p, key), low=low, high=high)
        if "from" in m:
            sender = r.string(m["from"], join(p, "from"), max_len=300)
            if sender is not None and parse_mailbox(sender) is None:
                r.add(
                    m["from"], join(p, "from"), "expected an address like 'Name <news@example.org>'"
                )
                sender = None
            values["sender"] = sender
        if any(v is None for v in values.values()):
            return None
        return DigestSettings(**values)  # type: ignore[arg-type]

    # --- clustering (issue 4) -------------------------------------------------------------

    def clustering(self, node: yaml.Node) -> ClusterSettings | None:
        r, p = self.r, "clustering"
        m = r.mapping(node, p, keys=_CLUSTERING_KEYS)
        if m is None:
            return None
        values: dict[str, object] = {}
        if "enabled" in m:
            values["enabled"] = r.boolean(m["enabled"], join(p, "enabled"))
        if "window_days" in m:
            values["window_days"] = r.integer(
                m["window_days"], join(p, "window_days"), low=1, high=90
            )
        if "top_stories" in m:
            values["top_stories"] = r.integer(
                m["top_stories"], join(p, "top_stories"), low=0, high=50
            )
        numbers = {
            "threshold": (0.0, 2.0),
            "semantic_threshold": (0.0, 1.0),
            "half_life_hours": (1.0, 24.0 * 365),
            "outlet_bonus": (0.0, 10.0),
        }
        for key, (low, high) in numbers.items():
            if key in m:
                values[key] = r.number(m[key], join(p, key), low=low, high=high)
        if "semantic" in m:
            values["semantic"] = r.choice(m["semantic"], join(p, "semantic"), ("auto", "on", "off"))
        if any(v is None for v in values.values()):
            return None
        return ClusterSettings(**values)  # type: ignore[arg-type]

    # --- delivery ------------------------------------------------------------------------

    def delivery(self, node: yaml.Node) -> DeliverySettings | None:
        r, p = self.r, "delivery"
        m = r.mapping(node, p, keys=_DELIVERY_KEYS, required=("mode", "from"))
        if m is None or "mode" not in m or "from" not in m:
            return None
        ok = True
        mode = r.choice(m["mode"], join(p, "mode"), ("smtp", "files"), "mode")
        sender = self.mailbox(m["from"], join(p, "from"))
        reply_to = self.mailbox(m["reply_to"], join(p, "reply_to")) if "reply_to" in m else ""
        smtp: SmtpSettings | None = None
        if "smtp" in m:
            smtp = self.smtp(m["smtp"], join(p, "smtp"))
            ok = smtp is not None
        elif mode == "smtp":
            r.add(node, join(p, "smtp"), "mode smtp needs an smtp: {host: ..., port: ...} mapping")
            ok = False
        values: dict[str, object] = {}
        if "rate_per_minute" in m:
            values["rate_per_minute"] = r.integer(
                m["rate_per_minute"], join(p, "rate_per_minute"), low=0, high=100_000
            )
        if "timeout" in m:
            values["timeout"] = r.number(m["timeout"], join(p, "timeout"), low=1, high=600)
        if "min_stories" in m:
            values["min_stories"] = r.integer(
                m["min_stories"], join(p, "min_stories"), low=0, high=10_000
            )
        if "max_lateness_hours" in m:
            values["max_lateness_hours"] = r.number(
                m["max_lateness_hours"], join(p, "max_lateness_hours"), low=0, high=24 * 7
            )
        if "unsubscribe_secret_env" in m:
            values["unsubscribe_secret_env"] = self.env_name(
                m["unsubscribe_secret_env"], join(p, "unsubscribe_secret_env")
            )
        if not ok or mode is None or sender is None or reply_to is None:
            return None
        if None in values.values():
            return None
        return DeliverySettings(
            mode=mode,  # type: ignore[arg-type]
            sender=sender,
            reply_to=reply_to,
            smtp=smtp,
            **values,  # type: ignore[arg-type]
        )

    # --- classify (issue 5) ---------------------------------------------------------------

    def classify(self, node: yaml.Node) -> ClassifySettings | None:
        """Labelled example files (paths relative to feeds.yaml), the model, review threshold.

        A missing example file is not an error here: `aggregator check` warns and the
        classifier does without it (the shared seed file is absent from a plain clone).
        """
        r, p = self.r, "classify"
        m = r.mapping(node, p, keys=_CLASSIFY_KEYS)
        if m is None:
            return None
        values: dict[str, object] = {}
        if "examples" in m:
            items = r.sequence(m["examples"], join(p, "examples"))
            paths = (
                None
                if items is None
                else _all_or_none(items, join(p, "examples"), lambda n, q: r.string(n, q))
            )
            values["examples"] = None if paths is None else tuple(self.local_path(x) for x in paths)
        if "model" in m:
            values["model"] = r.choice(m["model"], join(p, "model"), _CLASSIFY_MODELS, "model")
        if "review_below" in m:
            values["review_below"] = r.number(
                m["review_below"], join(p, "review_below"), low=0, high=1
            )
        if "use_corrections" in m:
            values["use_corrections"] = r.boolean(m["use_corrections"], join(p, "use_corrections"))
        if any(v is None for v in values.values()):
            return None
        return ClassifySettings(**values)  # type: ignore[arg-type]

    def check_examples(
        self, settings: ClassifySettings, node: yaml.Node, section_ids: dict[str, int]
    ) -> None:
        """Every example file that exists must parse, with known section ids (issue 5)."""
        for i, path in enumerate(settings.examples):
            if not path.is_file():
                continue  # `aggregator check` warns; the classifier does without it
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                self.r.add(node, join("classify.examples", i), f"cannot read {path}: {e}")
                continue
            try:
                parse_examples(text, str(path), section_ids)
            except ConfigError as e:
                self.r.problems.extend(e.problems)

    # --- web (issue 7) ----------------------------------------------------------------------

    def web(self, node: yaml.Node) -> WebSettings | None:
        r, p = self.r, "web"
        m = r.mapping(node, p, keys=_WEB_KEYS)
        if m is None:
            return None
        values: dict[str, object] = {}
        if "confirm_hours" in m:
            values["confirm_hours"] = r.number(
                m["confirm_hours"], join(p, "confirm_hours"), low=0.25, high=24 * 30
            )
        for key, high in (("per_address_per_day", 100), ("per_client_per_hour", 10_000)):
            if key in m:
                values[key] = r.integer(m[key], join(p, key), low=1, high=high)
        if "max_body_bytes" in m:
            values["max_body_bytes"] = r.integer(
                m["max_body_bytes"], join(p, "max_body_bytes"), low=1024, high=10 * 1024 * 1024
            )
        if None in values.values():
            return None
        return WebSettings(**values)  # type: ignore[arg-type]

    # --- end web (issue 7) ------------------------------------------------------------------

    def mailbox(self, node: yaml.Node, path: str) -> str | None:
        raw = self.r.string(node, path, max_len=300)
        if raw is not None and parse_mailbox(raw) is None:
            self.r.add(node, path, "expected an address like 'Name <news@example.org>'")
            return None
        return raw

    def env_name(self, node: yaml.Node, path: str) -> str | None:
        """The name of an environment variable (the secret itself never goes in feeds.yaml)."""
        raw = self.r.string(node, path, max_len=128)
        if raw is not None and not _ENV_RE.fullmatch(raw):
            self.r.add(
                node,
                path,
                # the value is not echoed: it may be the secret itself, pasted by mistake
                "not an environment variable name (like SMTP_PASSWORD); put the secret in "
                "the environment and its name here",
            )
            return None
        return raw

    def smtp(self, node: yaml.Node, path: str) -> SmtpSettings | None:
        r = self.r
        m = r.mapping(node, path, keys=_SMTP_KEYS, required=("host",))
        if m is None or "host" not in m:
            return None
        host = r.string(m["host"], join(path, "host"), max_len=253)
        if host is not None and ("/" in host or " " in host):
            r.add(m["host"], join(path, "host"), "a host name or address, not a URL")
            host = None
        security: str | None = "starttls"
        if "security" in m:
            security = r.string(m["security"], join(path, "security"))
            if security is not None and security not in DEFAULT_SMTP_PORTS:
                r.add(
                    m["security"],
                    join(path, "security"),
                    f"unknown security '{security}' (one of none, starttls, tls)",
                )
                security = None
        port: int | None = DEFAULT_SMTP_PORTS.get(security or "starttls", 587)
        if "port" in m:
            port = r.integer(m["port"], join(path, "port"), low=1, high=65535)
        envs: dict[str, str | None] = {}
        for key in ("username_env", "password_env"):
            if key in m:
                envs[key] = self.env_name(m[key], join(path, key))
        if ("username_env" in m) != ("password_env" in m):
            r.add(node, path, "give both username_env and password_env, or neither")
            return None
        if host is None or security is None or port is None or None in envs.values():
            return None
        return SmtpSettings(
            host=host,
            port=port,
            security=security,  # type: ignore[arg-type]
            username_env=envs.get("username_env") or "",
            password_env=envs.get("password_env") or "",
        )

    # --- topic, sections, rule terms ------------------------------------------------------

    def topic(self, node: yaml.Node) -> Topic | None:
        m = self.r.mapping(node, "topic", keys=("include", "exclude", "description"))
        if m is None:
            return None
        include = self.terms(m["include"], "topic.include") if "include" in m else ()
        exclude = self.phrases(m["exclude"], "topic.exclude") if "exclude" in m else ()
        description: str | None = ""  # issue 5: what the learned relevance gate starts from
        if "description" in m:
            description = self.r.string(
                m["description"], "topic.description", single_line=False, max_len=2000
            )
        if include is None or exclude is None or description is None:
            return None
        return Topic(include=include, exclude=exclude, description=description.strip())

    def sections(self, node: yaml.Node) -> tuple[tuple[Section, ...] | None, dict[str, int] | None]:
        items = self.r.sequence(node, "sections")
        if items is None:
            return None, None
        if not items:
            self.r.add(node, "sections", "at least one section is needed")
        ids: dict[str, int] = {}
        out: list[Section | None] = [self.section(item, i, ids) for i, item in enumerate(items)]
        if any(s is None for s in out) or not out:
            return None, ids
        return tuple(cast(list[Section], out)), ids

    def section(self, node: yaml.Node, index: int, ids: dict[str, int]) -> Section | None:
        r, p = self.r, join("sections", index)
        m = r.mapping(node, p, keys=_SECTION_KEYS, required=("id", "title"))
        if m is None:
            return None
        sid = self.r.identifier(m["id"], join(p, "id"), ids, "section") if "id" in m else None
        title = r.string(m["title"], join(p, "title"), max_len=200) if "title" in m else None
        description = ""
        if "description" in m:
            description = (
                r.string(m["description"], join(p, "description"), single_line=False) or ""
            )
        min_score: float | None = 1.0
        if "min_score" in m:
            min_score = r.number(m["min_score"], join(p, "min_score"), low=0, high=1000)
        rules = self.terms(m["rules"], join(p, "rules")) if "rules" in m else ()
        exclude = self.phrases(m["exclude"], join(p, "exclude")) if "exclude" in m else ()
        if sid is None or title is None or min_score is None or rules is None or exclude is None:
            return None
        return Section(sid, title, description.strip(), rules, exclude, min_score)

    def terms(self, node: yaml.Node, path: str) -> tuple[Rule, ...] | None:
        """Rule terms: `a phrase` (weight 1), {term: ..., weight: 2}, {regex: ..., weight: 1.5}."""
        items = self.r.sequence(node, path)
        return None if items is None else _all_or_none(items, path, self.term)

    def term(self, node: yaml.Node, path: str) -> Rule | None:
        r = self.r
        if not isinstance(node, yaml.MappingNode):
            phrase = self.phrase(node, path)
            return None if phrase is None else Rule(phrase)
        m = r.mapping(node, path, keys=("term", "regex", "weight"))
        if m is None:
            return None
        if ("term" in m) == ("regex" in m):
            r.add(node, path, "give exactly one of 'term' (a word or phrase) or 'regex'")
            return None
        weight: float | None = 1.0
        if "weight" in m:
            weight = r.number(m["weight"], join(path, "weight"), low=0.01, high=100)
        if "term" in m:
            pattern = self.phrase(m["term"], join(path, "term"))
        else:
            pattern = self.r.regex(m["regex"], join(path, "regex"))
        if pattern is None or weight is None:
            return None
        return Rule(pattern, weight, regex="regex" in m)

    def phrases(self, node: yaml.Node, path: str) -> tuple[str, ...] | None:
        items = self.r.sequence(node, path)
        return None if items is None else _all_or_none(items, path, self.phrase)

    def phrase(self, node: yaml.Node, path: str) -> str | None:
        text = self.r.string(node, path, max_len=200)
        if text is None:
            return None
        if not _WORD_RE.search(text):
            self.r.add(node, path, f"'{text}' has no letters or digits to match")
            return None
        if _BAD_STAR_RE.search(text):
            self.r.add(
                node, path, "'*' may only end a word (e.g. 'simulat*'); use a regex for more"
            )
            return None
        return text

    # --- sources ----------------------------------------------------------------------------

    def sources(
        self, node: yaml.Node, section_ids: dict[str, int] | None
    ) -> tuple[Source, ...] | None:
        items = self.r.sequence(node, "sources")
        if items is None:
            return None
        if not items:
            self.r.add(node, "sources", "at least one source is needed")
        ids: dict[str, int] = {}
        out = [self.source(item, i, ids, section_ids) for i, item in enumerate(items)]
        if any(s is None for s in out) or not out:
            return None
        return tuple(cast(list[Source], out))

    def source(
        self, node: yaml.Node, index: int, ids: dict[str, int], section_ids: dict[str, int] | None
    ) -> Source | None:
        r, p = self.r, join("sources", index)
        m = r.mapping(node, p, keys=_SOURCE_KEYS, required=("id", "name", "url"))
        if m is None:
            return None
        ok = all(k in m for k in ("id", "name", "url"))
        sid = self.r.identifier(m["id"], join(p, "id"), ids, "source") if "id" in m else None
        name = r.string(m["name"], join(p, "name"), max_len=200) if "name" in m else None
        url = self.r.url(m["url"], join(p, "url")) if "url" in m else None
        values: dict[str, object] = {}
        if "kind" in m:
            values["kind"] = r.choice(m["kind"], join(p, "kind"), get_args(SourceKind), "kind")
        if "interval" in m:
            minutes = r.integer(
                m["interval"], join(p, "interval"), low=_MIN_INTERVAL, high=_MAX_SOURCE_INTERVAL
            )
            values["interval"] = None if minutes is None else timedelta(minutes=minutes)
            if sid is not None:
                self.explicit_interval.add(sid)
        if "section" in m:
            values["section"] = self.section_ref(m["section"], join(p, "section"), section_ids)
        if "max_bytes" in m:
            values["max_bytes"] = r.integer(
                m["max_bytes"], join(p, "max_bytes"), low=1024, high=1 << 30
            )
        if "allow_private_network" in m:
            values["allow_private_network"] = r.boolean(
                m["allow_private_network"], p + ".allow_private_network"
            )
        if "weight" in m:  # issue 4: lead choice and ranking
            values["weight"] = r.number(m["weight"], join(p, "weight"), low=0.0, high=100.0)
        if "selectors" in m:
            values["selectors"] = self.selectors(m["selectors"], join(p, "selectors"))
            if values.get("kind") == "feed":
                r.add(
                    m["selectors"],
                    join(p, "selectors"),
                    "selectors apply to pages; remove them or set kind: page",
                )
                ok = False
        if not ok or sid is None or name is None or url is None or None in values.values():
            return None
        values.setdefault("max_bytes", DEFAULT_MAX_BYTES)
        return Source(id=sid, name=name, url=url, **values)  # type: ignore[arg-type]

    def section_ref(
        self, node: yaml.Node, path: str, section_ids: dict[str, int] | None
    ) -> str | None:
        sid = self.r.string(node, path)
        if sid is None or section_ids is None:
            return sid  # without a readable sections list there is nothing to check against
        if sid not in section_ids:
            hint = suggest(sid, section_ids) or f" (sections: {', '.join(section_ids)})"
            self.r.add(node, path, f"unknown section '{sid}'{hint}")
            return None
        return sid

    def selectors(self, node: yaml.Node, path: str) -> Selectors | None:
        m = self.r.mapping(node, path, keys=_SELECTOR_KEYS, required=("item",))
        if m is None or "item" not in m:
            return None
        values: dict[str, str | None] = {}
        for key, value in m.items():
            css = self.r.string(value, join(path, key), max_len=500)
            if css is not None:
                try:
                    soupsieve.compile(css)
                except soupsieve.SelectorSyntaxError as e:
                    first = str(e).splitlines()[0]
                    self.r.add(value, join(path, key), f"invalid CSS selector: {first}")
                    css = None
            values[key] = css
        if None in values.values():
            return None
        return Selectors(**values)  # type: ignore[arg-type]
