"""The arrows of ../shared/STYLE.md, read from the imports with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import aggregator

PKG = Path(aggregator.__file__).parent
TOP = {"cli", "scheduler", "pipeline"}
STAGES = {
    "fetch",
    "parse",
    "normalize",
    "dedupe",
    "classify",
    "digest",
    "render",
    "output",
    "config",
    "deliver",
    "subscribers",
    "cluster",  # issue 4
    "rank",  # issue 4
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        found[".".join(parts) or "__init__"] = path
    return found


def package_imports(path: Path) -> set[str]:
    """Top-level package modules imported (aggregator.x.y -> 'x')."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("aggregator")
        ):
            rest = node.module.split(".")[1:]
            if rest:
                names.add(rest[0])
            else:
                names.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("aggregator."):
                    names.add(a.name.split(".")[1])
    return names


def foreign_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def test_types_and_exceptions_import_nothing_from_the_package():
    for name in ("types", "exceptions"):
        assert package_imports(PKG / f"{name}.py") == set(), name


def test_stages_import_only_types_exceptions_and_their_own_helpers():
    allowed_common = {"types", "exceptions", "_version"}
    for name, path in modules().items():
        stage = top(name)
        if stage not in STAGES:
            continue
        imported = package_imports(path) - allowed_common - {stage}
        private_helpers = {m for m in imported if m.startswith("_")}
        assert imported - private_helpers == set(), f"{name} imports {imported - private_helpers}"


def test_storage_knows_nothing_of_the_stages():
    for name, path in modules().items():
        if top(name) == "storage":
            assert package_imports(path) <= {"types", "exceptions", "storage"}, name


def test_nothing_imports_cli_and_only_cli_imports_scheduler():
    for name, path in modules().items():
        imported = package_imports(path)
        assert "cli" not in imported or top(name) in {"cli", "__main__"}, name
        assert "scheduler" not in imported or top(name) in {"cli", "scheduler"}, name


def test_only_cli_imports_the_web_front():
    # web (issue 7): the ASGI app sits on top of the pipeline, like cli; nothing below uses it.
    for name, path in modules().items():
        imported = package_imports(path)
        assert "web" not in imported or top(name) in {"cli", "web"}, name


def test_argparse_and_apscheduler_only_at_the_top():
    for name, path in modules().items():
        foreign = foreign_imports(path)
        if top(name) not in {"cli", "scheduler"}:
            assert not foreign & {"argparse", "apscheduler", "click"}, name


def test_no_clock_reads_below_the_pipeline():
    for name, path in modules().items():
        if top(name) in TOP or name == "__main__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"now", "utcnow", "today"}
                and isinstance(node.value, ast.Name)
                and node.value.id in {"datetime", "date"}
            ):
                raise AssertionError(f"{name} reads the clock; take `now` as an argument")


def test_public_names_are_sorted_and_exist():
    assert list(aggregator.__all__) == sorted(aggregator.__all__)
    for name in aggregator.__all__:
        assert hasattr(aggregator, name), name


def _type_checking_imports(path: Path) -> dict[str, str]:
    """name -> module, from the `if TYPE_CHECKING:` imports of a lazy package `__init__`."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    found.update({a.asname or a.name: stmt.module for a in stmt.names})
    return found


def test_lazy_public_names_are_the_defining_modules_objects():
    """issue 8: `aggregator` and `aggregator.pipeline` import their names on first use; each
    must be the very object its module (as the type checker sees it) defines."""
    import importlib

    from aggregator import pipeline

    for package in (aggregator, pipeline):
        declared = _type_checking_imports(Path(package.__file__))
        assert declared, package.__name__
        for name, module in declared.items():
            assert name in package.__all__, (package.__name__, name)
            expected = getattr(importlib.import_module(module), name)
            assert getattr(package, name) is expected, (package.__name__, name)


def test_a_parse_worker_imports_neither_the_store_nor_http_nor_the_renderers():
    """issue 8: the fork server preloads `aggregator.pipeline._prepare`; what it imports
    every worker carries (about 20 MB more with SQLAlchemy, httpx, jinja2 and Starlette)."""
    import subprocess
    import sys

    code = (
        "import sys, aggregator._budget, aggregator.pipeline._prepare\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sqlalchemy', 'httpx', 'httpcore', 'jinja2', 'starlette', 'uvicorn', 'apscheduler'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
