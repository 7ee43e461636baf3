"""Hybrid ranking: keyword (BM25 / $text) candidates and vector candidates fused by reciprocal rank
fusion, for conversation search and for the knowledge agent's chunk retrieval.

RRF (Cormack et al., 2009) adds 1 / (k + rank) over the lists an item appears in, so it needs no
calibration between BM25 scores and cosines, and an item both lists rank well wins. Each result
says how it matched: `keyword`, `meaning` (vectors only: it shares no indexed word with the
query) or `both`. Without the model (EMBEDDINGS=false, packages missing) hybrid is keyword search.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from agents import offload

from . import model

MODES = ("hybrid", "keyword", "semantic")
RRF_K = 60
DEPTH = 50  # candidates taken from each list before fusing
# Vector hits below this cosine are dropped: under it MiniLM's neighbours are mostly unrelated text
# (on benchmarks/search_eval_set.tsv it loses 4 of 200 paraphrase targets and keeps ~3 strangers a query).
MIN_SIMILARITY = 0.25

log = logging.getLogger(__name__)
T, R = TypeVar("T"), TypeVar("R")
_SIDE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="search-by-meaning")


class SemanticUnavailable(RuntimeError):
    """Search by meaning was asked for and this server has no embedding model."""


def embedder(config) -> model.Embedder | None:
    """The shared model, or None when it is switched off or cannot load (the reason is logged at each
    search; the load is tried once per process)."""
    if not config.EMBEDDINGS:
        return None
    try:
        return model.shared()
    except model.ModelUnavailable as error:
        log.warning("search by meaning is off: %s", error)
        return None


def query_vector(config, text: str):
    """The query's vector, computed on a real thread (the model holds no GIL while it runs)."""
    found = embedder(config)
    if found is None:
        return None
    return offload.run_blocking(found.encode, [text])[0]


def rrf(rankings: list[list[Hashable]], k: int = RRF_K) -> dict[Hashable, float]:
    """Reciprocal rank fusion: key -> sum of 1 / (k + rank), rank from 1; first-seen order kept."""
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


def fuse(keyword: list[dict], semantic: list[dict], key: Callable[[dict], Hashable], limit: int) -> list[dict]:
    """The fused top `limit`, each record from the keyword list when it is there (its snippet and
    highlights mark the words), with score (the RRF sum) and match."""
    scores = rrf([[key(hit) for hit in keyword], [key(hit) for hit in semantic]])
    by_meaning = {key(hit): hit for hit in semantic}
    records = {**{key(hit): (hit, "meaning") for hit in semantic},
               **{key(hit): (hit, "both" if key(hit) in by_meaning else "keyword") for hit in keyword}}
    best = sorted(scores, key=lambda item: -scores[item])[:limit]
    return [dict(records[item][0], score=round(scores[item], 6), match=records[item][1]) for item in best]


def _similar(hits: list[dict]) -> list[dict]:
    return [hit for hit in hits if hit["score"] >= MIN_SIMILARITY]


def _conversation(hit: dict) -> Hashable:
    return hit["conversation_id"]


def _chunk(hit: dict) -> Hashable:
    return hit["document_id"], hit["index"]


def search_conversations(store, config, user_id: str, query: str, mode: str = "hybrid",
                         limit: int = 20) -> list[dict]:
    """store.search's hits, in `mode`; raises SemanticUnavailable for mode=semantic without a model.
    In hybrid mode the keyword search runs while the query is embedded and the vectors scored."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    found = None if mode == "keyword" else embedder(config)
    if found is None:
        if mode == "semantic":
            raise SemanticUnavailable("search by meaning is not available on this server")
        return [dict(hit, match="keyword") for hit in store.search(user_id, query, limit=limit)]
    depth = max(limit, DEPTH)

    def by_meaning() -> list[dict]:
        vector = offload.run_blocking(found.encode, [query])[0]
        return _similar(store.search_vectors(user_id, vector, limit=depth,
                                             candidates=config.EMBED_SEARCH_CANDIDATES, query=query))
    if mode == "semantic":
        return [dict(hit, match="meaning") for hit in by_meaning()[:limit]]
    keyword, semantic = both(lambda: store.search(user_id, query, limit=depth), by_meaning)
    return fuse(keyword, semantic, _conversation, limit)


def both(first: Callable[[], T], second: Callable[[], R]) -> tuple[T, R]:
    """first() and second() at once: `second` on a long-lived thread of this module in threading mode
    (long-lived, so SQLite's per-thread connection and its page cache are reused), on a green thread
    otherwise (its store and model calls go to real threads through the offload adapter)."""
    if offload.mode() == "threading":
        later = _SIDE.submit(second)
        return first(), later.result()
    results = offload.bounded_map(lambda call: call(), [first, second], 2)
    return results[0], results[1]


def search_chunks(store, config, user_id: str, query: str, limit: int) -> list[dict]:
    """The knowledge agent's retrieval: BM25 chunks and nearest chunks, fused (keyword alone without a model)."""
    vector = query_vector(config, query)
    if vector is None:
        return store.search_chunks(user_id, query, limit=limit)
    depth = max(limit * 4, 20)
    keyword = store.search_chunks(user_id, query, limit=depth)
    semantic = _similar(store.search_chunk_vectors(user_id, vector, limit=depth,
                                                   candidates=config.EMBED_SEARCH_CANDIDATES))
    return fuse(keyword, semantic, _chunk, limit)
