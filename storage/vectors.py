"""What both stores share about vectors: their byte form, and a bounded brute-force ranking.

A vector is stored as little-endian float32 bytes (the layout sqlite-vec and BSON binary both
take). A search scores the query against the user's newest `candidates` vectors only: exact
cosine, cost bounded per query whatever the history's size, the same cap idea as keyword search.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KINDS = ("message", "chunk")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")


def pack(vector: Sequence[float] | np.ndarray) -> bytes:
    """Unit length, so a search is one matrix product (a zero vector stays zero: it matches nothing)."""
    array = np.asarray(vector, dtype="<f4")
    if array.ndim != 1 or not array.size:
        raise ValueError("a vector is a non-empty list of numbers")
    norm = float(np.linalg.norm(array))
    return (array / norm if norm else array).astype("<f4").tobytes()


def top_k(query: Sequence[float] | np.ndarray, blobs: list[bytes], k: int) -> list[tuple[int, float]]:
    """(index into blobs, cosine) of the k best, best first, for blobs made by pack(); blobs of
    another size (another model's) are skipped."""
    q = np.asarray(query, dtype=np.float32)
    norm = float(np.linalg.norm(q))
    if not blobs or k <= 0 or norm == 0:
        return []
    size = q.size * 4
    keep = [i for i, blob in enumerate(blobs) if len(blob) == size]
    if not keep:
        return []
    joined = b"".join(blobs) if len(keep) == len(blobs) else b"".join(blobs[i] for i in keep)
    scores = np.frombuffer(joined, dtype="<f4").reshape(len(keep), q.size) @ (q / norm)
    best = np.argpartition(-scores, k - 1)[:k] if k < len(keep) else np.arange(len(keep))
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(keep[i], float(scores[i])) for i in best]

