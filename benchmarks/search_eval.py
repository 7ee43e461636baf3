"""Search quality: recall@10 and MRR of keyword, semantic and hybrid search on a labelled set.

The set (benchmarks/search_eval_set.tsv, written by hand for this project; see its header) gives
200 conversations and, for each, a paraphrased query sharing no content word with it (checked
here: no query word has the first five letters of a conversation word, stop words aside). The
200 keyword-style queries are derived from the same conversations: their two longest content
words. Each conversation is one user message plus a fixed assistant line, so the assistant's
words add no signal; all 200 live in one user's SQLite store (mongomock has no $text), and every
other conversation is a distractor for each query.

    python benchmarks/search_eval.py [--set PATH]
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import TestConfig
from semantic import hybrid, indexer, model
from storage.sqlite_store import SqliteStore

SET = Path(__file__).with_name("search_eval_set.tsv")
USER = "eval-user"
K = 10
REPLY = "Here is what I can tell you."
STOP_WORDS = """a an the and or but if of to in on at for with from by about as into over after before under
between through is are was were be been being do does did doing have has had having i me my we our you your
he she it its they them their this that these those what which who whom whose when where why how can could
should would will shall may might must not no so than too very just own same other some any each few more
most all both s t don get my much many here there up down out off again further then once only also"""
STOP = set(STOP_WORDS.split())


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOP and len(w) > 1]


def stems(text: str) -> set[str]:
    return {w[:5] for w in words(text)}


def load(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            message, query = line.split("\t")
            pairs.append((message.strip(), query.strip()))
    return pairs


def overlaps(pairs: list[tuple[str, str]]) -> list[tuple[int, set[str]]]:
    """(line, shared stems) for every pair whose query shares a content word with its conversation."""
    found = []
    for i, (message, query) in enumerate(pairs):
        shared = stems(query) & stems(message + " " + REPLY)
        if shared:
            found.append((i, shared))
    return found


def keyword_query(message: str) -> str:
    """The conversation's two longest content words, as someone remembering it would type them."""
    ranked = sorted(dict.fromkeys(words(message)), key=lambda w: (-len(w), w))
    return " ".join(ranked[:2])


def build(store, pairs, embedder) -> list[str]:
    ids = []
    for message, _ in pairs:
        cid = store.create_conversation(USER, "")["conversation_id"]
        first = store.append_message(USER, cid, "user", message)
        store.append_message(USER, cid, "assistant", REPLY, parent_message_id=first["message_id"])
        ids.append(cid)
    indexer.backfill(store, embedder)
    return ids


def evaluate(store, config, queries: list[tuple[str, str]], mode: str) -> tuple[float, float]:
    """(recall@K, MRR@K) over (query, target conversation id) pairs."""
    hits, reciprocal = 0, 0.0
    for query, target in queries:
        ranked = [h["conversation_id"] for h in hybrid.search_conversations(store, config, USER, query, mode, K)]
        if target in ranked:
            hits += 1
            reciprocal += 1.0 / (ranked.index(target) + 1)
    return hits / len(queries), reciprocal / len(queries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=SET)
    args = parser.parse_args(argv)
    pairs = load(args.set)
    bad = overlaps(pairs)
    if bad:
        for i, shared in bad:
            print(f"pair {i + 1} shares {sorted(shared)}: {pairs[i]}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        config = TestConfig(Path(folder))
        store = SqliteStore(Path(folder) / "eval.sqlite3")
        store.migrate()
        started = time.perf_counter()
        ids = build(store, pairs, model.shared())
        print(f"{len(pairs)} conversations stored and embedded in {time.perf_counter() - started:.1f} s")
        sets = {"paraphrase (no shared word)": [(q, cid) for (_, q), cid in zip(pairs, ids, strict=True)],
                "keyword-style": [(keyword_query(m), cid) for (m, _), cid in zip(pairs, ids, strict=True)]}
        print(f"\n| query set | n | mode | recall@{K} | MRR |\n|---|---|---|---|---|")
        for name, queries in sets.items():
            for mode in ("keyword", "semantic", "hybrid"):
                recall, mrr = evaluate(store, config, queries, mode)
                print(f"| {name} | {len(queries)} | {mode} | {recall:.3f} | {mrr:.3f} |")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
