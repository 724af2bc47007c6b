"""Public names a package imports on first use (PEP 562), for its `__init__` (issue 8).

A parse worker imports `aggregator.pipeline._prepare`, and with it the `__init__` of
`aggregator` and of `aggregator.pipeline`; were those to import every public name, each worker
would carry SQLAlchemy, httpx, jinja2 and Starlette. With

    __getattr__, __dir__ = lazy_names(__name__, __all__, ("aggregator.config", ...))

a public name not yet bound is looked up in `modules`, in order, on first use, and bound in
the package. The `__init__` keeps the same imports under `if TYPE_CHECKING:` for type
checkers; tests/test_architecture.py checks that each name resolves to that very object.
Imports only the standard library.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Sequence


def lazy_names(
    package: str, public: Collection[str], modules: Sequence[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for the package named `package`."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        if name in public:
            for module in modules:
                found = importlib.import_module(module)
                if hasattr(found, name):
                    value = namespace[name] = getattr(found, name)  # found directly next time
                    return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
