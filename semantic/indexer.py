"""Gives every stored message and upload chunk its vector, in the background, in batches.

Nothing in a turn calls it: it reads the store's backlog (items after its cursor that have no
vector yet), so a reply never waits for an embedding and a message stored by any path (socket,
upload job, import) is covered. The model runs on a real thread (offload.run_blocking: onnxruntime
holds no GIL), one batch at a time. Every RESCAN_S the cursor steps back to where it stood at the
previous rescan, so an item whose insert committed after a later one's (MongoDB ids are made by
clients) is still picked up. `init_db.py --embed` back-fills what was stored before (backfill()).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agents import offload
from storage.vectors import KINDS, pack

from . import model

RESCAN_S = 300.0
MAX_DEFER_S = 60.0  # under constant load, still one batch a minute: search by meaning lags, never stops
log = logging.getLogger(__name__)


class Indexer:
    def __init__(self, store, embedder, batch: int = 32, start: dict | None = None) -> None:
        self.store, self.embedder, self.batch = store, embedder, batch
        self.cursors = dict(start) if start is not None else {kind: store.vector_start(kind) for kind in KINDS}
        self._rescan_from, self._rescanned = dict(self.cursors), time.monotonic()

    def step(self) -> int:
        """One batch of each kind; returns how many items it read."""
        if time.monotonic() - self._rescanned > RESCAN_S:
            self.cursors, self._rescan_from = dict(self._rescan_from), dict(self.cursors)
            self._rescanned = time.monotonic()
        return sum(self.batch_of(kind) for kind in KINDS)

    def batch_of(self, kind: str) -> int:
        """Embed and store the next batch of one kind; returns how many items it read (0: none left)."""
        items = self.store.vector_backlog(kind, self.cursors[kind], self.batch)
        if items:
            vectors = offload.run_blocking(self.embedder.encode, [item["text"] for item in items])
            self.store.put_vectors(kind, [(item["key"], pack(vector))
                                          for item, vector in zip(items, vectors, strict=True)])
            self.cursors[kind] = items[-1]["pos"]
        return len(items)

    def run(self, sleep: Callable[[float], None], poll_s: float, stop: Callable[[], bool] = lambda: False,
            busy: Callable[[], bool] = lambda: False) -> None:
        """Forever (until stop()): a batch while there is a backlog, else a nap of poll_s. While busy()
        (replies streaming in this process) it waits, up to MAX_DEFER_S: on two cores a batch of
        embeddings doubled the replies' time to first chunk under load."""
        deferred_since = None
        while not stop():
            if busy() and (deferred_since is None or time.monotonic() - deferred_since < MAX_DEFER_S):
                deferred_since = deferred_since or time.monotonic()
                sleep(poll_s)
                continue
            deferred_since = None
            try:
                read = self.step()
            except Exception:  # a database hiccup must not end indexing for the process's life
                log.exception("embedding batch failed; retrying after %.1f s", poll_s)
                read = 0
            sleep(0 if read else poll_s)


def backfill(store, embedder, batch: int = 64, report: Callable[[str, int, int], None] | None = None,
             report_every: int = 20) -> int:
    """Embed everything that has no vector yet, oldest first. Safe to stop and run again: it
    resumes, since only items without a vector are read. Returns how many items it embedded;
    report(kind, with_vector, all) every `report_every` batches and at the end of each kind."""
    indexer = Indexer(store, embedder, batch, start=dict.fromkeys(KINDS))
    total = 0
    for kind in KINDS:
        batches = 0
        while read := indexer.batch_of(kind):
            total, batches = total + read, batches + 1
            if report is not None and batches % report_every == 0:
                report(kind, *store.vector_counts(kind))
        if report is not None:
            report(kind, *store.vector_counts(kind))
    return total


def init_app(app, busy: Callable[[], bool] = lambda: False) -> None:
    """Start the indexer as a background task of this process (EMBEDDINGS and EMBED_INDEXER on);
    it lets replies go first while busy()."""
    config = app.config["CHAT"]
    if not (config.EMBEDDINGS and config.EMBED_INDEXER):
        return
    socketio = app.extensions["socketio"]

    def run() -> None:
        try:
            embedder = model.shared()
        except model.ModelUnavailable as error:
            log.warning("messages will not be embedded: %s", error)
            return
        store = app.extensions["chat_store"].get()
        Indexer(store, embedder, config.EMBED_BATCH).run(socketio.sleep, config.EMBED_POLL_S, busy=busy)

    socketio.start_background_task(run)
