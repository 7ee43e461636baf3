"""Search latency benchmark for the SQLite store: `SqliteStore.search(user_id, query, limit=20)`.

Builds once (cached in benchmarks/.data/, keyed by the parameters) a database made by
`SqliteStore(path).migrate()` holding --messages chat-length messages (20-80 Zipf-distributed
pseudo-words, ~50 on average) spread over --users users, plus one heavy user with --heavy
messages. Conversations (20-50 messages) start at random times over two years and rows are
inserted in time order, so a user's rows are scattered over the rowid space. Plain INSERTs (the
FTS triggers index them), then FTS5 `optimize`; the copy taken before it is kept (--no-optimize).

Measures, warm cache, one connection: p50/p95 wall (and p95 CPU, all of the process's threads) time of the real code path
(ranked, snippets, top 20) for very common words (in >50% of messages), mid (~1%), rare (<=0.01%),
a 3-letter prefix (`kar*`, served by the prefix='2 3' index) and a 4-letter one (not covered by
it), over 10 normal users and the heavy user. Targets: p95 < 50 ms normal, < 100 ms heavy.

With --hybrid it also times hybrid search (semantic/hybrid.py: the query embedded by the real
model, the keyword hits above, the user's newest EMBED_SEARCH_CANDIDATES vectors scored, RRF) for
the same users and words, and measures the model: embedding throughput (messages/s on one core,
on these messages and on short English ones) and resident memory. The bench users' vectors are
random unit vectors (what is timed is scanning and scoring them, not their meaning; embedding 1.1M
messages for real takes hours on 2 cores), written once into the cached database.

Run from the project root:
    .venv/bin/python benchmarks/search_bench.py                      # 1M + 100k heavy (build: minutes)
    .venv/bin/python benchmarks/search_bench.py --messages 50000 --users 50 --heavy 5000   # quick
    .venv/bin/python benchmarks/search_bench.py --hybrid            # plus hybrid and the model's figures
Flags: --rebuild, --no-optimize, --queries N, --seed N, --hybrid.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from storage.sqlite_store import SqliteStore

DATA = Path(__file__).resolve().parent / ".data"
VOCAB_SIZE, ZIPF_S = 50_000, 1.0
EPOCH, SPAN_S = datetime(2023, 1, 1, tzinfo=UTC), 730 * 86400
TARGET_MS = {"normal": 50.0, "heavy": 100.0}


# -- data generation ------------------------------------------------------------------------------
def make_vocab(rng: random.Random) -> list[str]:
    """Unique pronounceable pseudo-words, shortest first (rank 1 = most frequent, like real text)."""
    onsets = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr"] + [""]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
    codas = ["", "", "", "", "n", "r", "l", "m", "s", "nd", "st"]
    words: set[str] = set()
    while len(words) < VOCAB_SIZE:
        syllables = rng.choice((1, 2, 2, 3, 3, 3, 4))
        word = "".join(rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas) for _ in range(syllables))
        if len(word) >= 3:
            words.add(word)
    return sorted(sorted(words), key=lambda w: len(w) + rng.gauss(0, 1.5))  # sorted(): set order varies


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def iso(offset_s: float) -> str:
    return (EPOCH + timedelta(seconds=offset_s)).isoformat(timespec="milliseconds")


def build(path: Path, messages: int, users: int, heavy: int, seed: int) -> dict:
    rng = random.Random(seed)
    vocab = make_vocab(rng)
    cum = list(itertools.accumulate(rank ** -ZIPF_S for rank in range(1, VOCAB_SIZE + 1)))
    normal_ids = [new_uuid(rng) for _ in range(users)]
    heavy_id = new_uuid(rng)
    per_user = [(uid, messages // users + (i < messages % users)) for i, uid in enumerate(normal_ids)]
    conversations, events = [], []  # (conversation_id, user_id, count, start, end); (time, conv index)
    for uid, count in per_user + [(heavy_id, heavy)]:
        while count > 0:
            n = min(count, rng.randint(20, 50))
            count -= n
            t = rng.uniform(0, SPAN_S - 86400)
            start = t
            for _ in range(n):
                events.append((t, len(conversations)))
                t += rng.uniform(5, 300)
            conversations.append((new_uuid(rng), uid, n, start, t))
    events.sort()

    store = SqliteStore(path)
    store.migrate()
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    seen = [0] * len(conversations)
    last_id: list[str | None] = [None] * len(conversations)
    sentence = lambda k: " ".join(rng.choices(vocab, cum_weights=cum, k=k))
    for chunk in range(0, len(events), 50_000):
        conv_rows, msg_rows = [], []
        for t, c in events[chunk:chunk + 50_000]:
            cid, uid, n, start, end = conversations[c]
            if seen[c] == 0:
                title = sentence(rng.randint(2, 5)).capitalize()
                conv_rows.append((cid, uid, title, int(n * 65), n, iso(start), iso(end)))
            words = rng.randint(20, 80)
            role = "user" if seen[c] % 2 == 0 else "assistant"
            message_id = new_uuid(rng)
            msg_rows.append((message_id, cid, uid, last_id[c], role, sentence(words).capitalize() + ".", iso(t),
                             int(words * 1.3), None if role == "user" else "chat",
                             None if role == "user" else "stop"))
            seen[c] += 1
            last_id[c] = message_id
        db.execute("BEGIN")
        db.executemany("INSERT INTO conversations (conversation_id, user_id, title, total_tokens, "
                       "message_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", conv_rows)
        db.executemany("INSERT INTO messages (message_id, conversation_id, user_id, parent_message_id, role, "
                       "content, created_at, tokens, agent, finish_reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       msg_rows)
        db.execute("COMMIT")
        print(f"\r  inserted {min(chunk + 50_000, len(events)):,}/{len(events):,} messages", end="", flush=True)
    print()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return {"vocab": vocab, "heavy": heavy_id, "normal": normal_ids[:: max(1, users // 10)][:10]}


def cached_db(args) -> tuple[Path, dict]:
    DATA.mkdir(parents=True, exist_ok=True)
    key = f"m{args.messages}-u{args.users}-h{args.heavy}-s{args.seed}"
    opt, raw, meta = DATA / f"{key}.db", DATA / f"{key}-noopt.db", DATA / f"{key}.json"
    if args.rebuild or not (opt.exists() and raw.exists() and meta.exists()):
        for stale in DATA.glob(f"{key}*"):
            stale.unlink()
        print(f"building {key} ...")
        started = time.perf_counter()
        tmp = DATA / f"{key}.building"
        info = build(tmp, args.messages, args.users, args.heavy, args.seed)
        inserted = time.perf_counter() - started
        shutil.copyfile(tmp, raw)
        db = sqlite3.connect(tmp, isolation_level=None)
        t0 = time.perf_counter()
        db.execute("INSERT INTO messages_fts(messages_fts) VALUES('optimize')")
        db.execute("INSERT INTO titles_fts(titles_fts) VALUES('optimize')")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        info["build"] = {"insert_s": round(inserted, 1), "optimize_s": round(time.perf_counter() - t0, 1)}
        tmp.rename(opt)
        meta.write_text(json.dumps(info))
    info = json.loads(meta.read_text())
    path = raw if args.no_optimize else opt
    print(f"database {path.name}: {path.stat().st_size / 2**20:,.0f} MiB "
          f"(insert {info['build']['insert_s']} s, optimize {info['build']['optimize_s']} s, "
          f"fts optimize {'NOT applied' if args.no_optimize else 'applied'})")
    return path, info


# -- choosing words by measured document frequency -------------------------------------------------
def pick_words(db: sqlite3.Connection, vocab: list[str], total: int) -> dict[str, list[str]]:
    db.execute("CREATE VIRTUAL TABLE temp.df USING fts5vocab(main, messages_fts, row)")
    db.execute("CREATE VIRTUAL TABLE temp.stem USING fts5(w, tokenize='porter unicode61 remove_diacritics 2')")
    db.executemany("INSERT INTO temp.stem(rowid, w) VALUES (?, ?)", enumerate(vocab))
    db.execute("CREATE VIRTUAL TABLE temp.stem_terms USING fts5vocab(temp, stem, instance)")
    stem = dict(db.execute("SELECT doc, term FROM temp.stem_terms"))

    @functools.cache
    def df(rank: int) -> float:
        row = db.execute("SELECT doc FROM temp.df WHERE term = ?", (stem[rank],)).fetchone()
        return (row[0] if row else 0) / total

    def prefix_df(prefix: str) -> float:
        return db.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?",
                          (f"content : {prefix}*",)).fetchone()[0] / total

    ranks = sorted({stem[r]: r for r in reversed(range(len(vocab)))}.values())  # one word per stem
    common = [vocab[r] for r in ranks[:30] if df(r) > 0.5][:5]
    mid = [vocab[r] for r in sorted(ranks[100:3000], key=lambda r: abs(df(r) - 0.01))[:10]]
    rare = [vocab[r] for r in ranks[:-20_000:-7] if len(vocab[r]) <= 12 and 0 < df(r) <= 1e-4][:10]
    prefixes = {}  # prefixes shared by many words, not of a very common word, of mid doc frequency
    for n, lo, hi in ((3, 0.01, 0.06), (4, 0.005, 0.03)):
        shared = [p for p, _ in Counter(w[:n] for w in vocab if len(w) > n).most_common(300)]
        fits = (p + "*" for p in shared
                if not any(w.startswith(p) for w in vocab[:40]) and lo <= prefix_df(p) <= hi)
        prefixes[f"prefix{n}"] = list(itertools.islice(fits, 5))
    kinds = {"common": common, "mid": mid, "rare": rare, **prefixes}
    for kind, words in kinds.items():
        dfs = [prefix_df(w[:-1]) if w.endswith("*") else df(vocab.index(w)) for w in words]
        print(f"  {kind:8} {len(words)} queries, doc freq {min(dfs):.4%}..{max(dfs):.4%}  e.g. {words[:3]}")
    return kinds


# -- timing ------------------------------------------------------------------------------------------
def bench_cell(search, users: list[str], words: list[str], n: int, rng: random.Random):
    pairs = [(u, w) for u in users for w in words]
    rng.shuffle(pairs)
    times, cpu, hits = [], [], []
    for i in range(n + 2):  # two warm-ups
        user, word = pairs[i % len(pairs)]
        t0, c0 = time.perf_counter(), time.process_time()
        found = search(user, word)
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            hits.append(len(found))
    q, cpu_q = (statistics.quantiles(ms, n=100, method="inclusive") for ms in (times, cpu))
    return q[49], q[94], cpu_q[94], max(times), statistics.mean(hits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--heavy", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=80, help="timed queries per cell")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-optimize", action="store_true", help="bench the copy taken before FTS optimize")
    parser.add_argument("--hybrid", action="store_true", help="also time hybrid search and measure the model")
    args = parser.parse_args()

    path, info = cached_db(args)
    store = SqliteStore(path)
    print(f"code path: {type(store).__name__}.search(user_id, query, limit=20)")
    db = store._db()
    total = db.execute("SELECT max(seq) FROM messages").fetchone()[0]
    kinds = pick_words(db, info["vocab"], total)
    users = {"normal": info["normal"], "heavy": [info["heavy"]]}
    for kind, ids in users.items():
        counts = [db.execute("SELECT count(*) FROM messages WHERE user_id = ?", (u,)).fetchone()[0] for u in ids]
        print(f"  {kind:8} {len(ids)} user(s), {min(counts):,}..{max(counts):,} messages each")

    rng = random.Random(args.seed)
    searches = {"keyword": lambda user, word: store.search(user, word, limit=20)}
    if args.hybrid:
        searches["hybrid"] = hybrid_search(store, [u for ids in users.values() for u in ids], args.seed)
    failed = 0
    print(f"\nload average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other processes inflate wall times)")
    print(f"\n{'mode':7} {'user':7} {'query kind':9} {'p50 ms':>7} {'p95 ms':>7} {'cpu p95':>7} {'max ms':>7} "
          f"{'hits':>5} {'target':>7}")
    for mode, search in searches.items():
        for user_kind, ids in users.items():
            for word_kind, words in kinds.items():
                if not words:
                    print(f"{mode:7} {user_kind:7} {word_kind:9} (no word of this kind found)")
                    continue
                p50, p95, cpu95, worst, hits = bench_cell(search, ids, words, args.queries, rng)
                ok = p95 < TARGET_MS[user_kind]
                failed += not ok
                print(f"{mode:7} {user_kind:7} {word_kind:9} {p50:7.1f} {p95:7.1f} {cpu95:7.1f} {worst:7.1f} "
                      f"{hits:5.1f} {'<' + format(TARGET_MS[user_kind], '.0f'):>7} {'PASS' if ok else 'FAIL'}")
    print(f"\n{args.queries} timed queries per cell after 2 warm-ups; PASS/FAIL is wall p95; hits = mean results "
          f"returned (limit 20); load average now {os.getloadavg()[0]:.2f}")
    if args.hybrid:
        model_figures(db)
    store.close()
    return 1 if failed else 0


# -- hybrid search and the embedding model (--hybrid) ------------------------------------------------
def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hybrid_search(store: SqliteStore, users: list[str], seed: int):
    """Random unit vectors for the bench users' messages (once, kept in the cached database), then a
    search function running the app's hybrid path with the real model embedding each query."""
    import numpy as np

    from config import TestConfig
    from semantic import hybrid, model
    store.migrate()
    db, rng = store._db(), np.random.default_rng(seed)
    for user in users:
        missing = [row[0] for row in db.execute(
            "SELECT seq FROM messages m WHERE user_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM message_vectors v WHERE v.item = m.seq)", (user,))]
        for at in range(0, len(missing), 20_000):
            part = missing[at:at + 20_000]
            vectors = rng.standard_normal((len(part), model.DIMENSIONS)).astype("<f4")
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            with store._write() as tx:
                tx.executemany("INSERT INTO message_vectors (item, user_id, vec) VALUES (?, ?, ?)",
                               [(seq, user, vector.tobytes()) for seq, vector in zip(part, vectors, strict=True)])
        if missing:
            print(f"  {len(missing):,} random vectors written for user {user[:8]}")
    config = TestConfig(DATA)
    before = rss_mib()
    model.shared().encode(["warm up"])
    print(f"  hybrid: model loaded, resident memory +{rss_mib() - before:.0f} MiB; "
          f"{config.EMBED_SEARCH_CANDIDATES:,} newest vectors scored per query")
    return lambda user, word: hybrid.search_conversations(store, config, user, word, "hybrid", 20)


def model_figures(db: sqlite3.Connection) -> None:
    """Embedding throughput on one core (the indexer's batch size) and the model's resident memory."""
    from semantic import model
    embedder = model.shared()
    sets = {"bench messages (20-80 pseudo-words, most cut at 128 tokens)":
            [row[0] for row in db.execute("SELECT content FROM messages ORDER BY seq LIMIT 640")],
            "short English (benchmarks/search_eval_set.tsv)":
            [line.split("\t")[0] for line in (Path(__file__).with_name("search_eval_set.tsv")).read_text()
             .splitlines() if line and not line.startswith("#")]}
    print(f"\nembedding, one onnxruntime thread, batches of 32; load average {os.getloadavg()[0]:.2f}")
    for name, texts in sets.items():
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            for at in range(0, len(texts), 32):
                embedder.encode(texts[at:at + 32])
            rates.append(len(texts) / (time.perf_counter() - started))
        print(f"  {name}: {statistics.median(rates):,.0f} messages/s (median of 3 over {len(texts)})")
    print(f"  process resident memory with the model loaded: {rss_mib():.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
