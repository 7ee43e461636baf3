"""The library contract (documents and their chunks, jobs, the model cache, message meta) on
every store: SQLite, mongomock and, with MONGODB_URI, a real MongoDB. Cases mongomock cannot
run ($text, validators) are skipped with the reason."""
import importlib
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime

import pytest
from conftest import MONGOMOCK_SKIP, STORE_KINDS, migrated_store

from storage import NotFound
from storage.base import JOB_STATUSES
from storage.sqlite_migrations import MIGRATIONS

NOW = datetime(2025, 1, 1, tzinfo=UTC)
PENGUINS = ["Penguins live in Antarctica.",
            "Penguins eat krill. Penguins chase krill and more krill under the ice, penguins everywhere.",
            "Owls hunt mice at night.",
            "Bread needs flour, water and salt.",
            "Volcanoes erupt when pressure builds up."]


def add(store, user="alice", name="notes.txt", content_hash="h1", chunks=("alpha beta", "gamma"),
        conversation_id=None):
    """A document whose chunk token counts are its word counts."""
    chunks = list(chunks)
    return store.add_document(user, name, content_hash, chunks, [len(c.split()) for c in chunks],
                              conversation_id=conversation_id)


# -- documents ---------------------------------------------------------------------------------

def test_store_add_document_round_trips(store):
    cid = store.create_conversation("alice")["conversation_id"]
    document = add(store, chunks=["one two", "three", "four five six"], conversation_id=cid)
    assert {key: document[key] for key in ("user_id", "conversation_id", "file_name", "content_hash",
                                           "chunk_count", "tokens")} == {
        "user_id": "alice", "conversation_id": cid, "file_name": "notes.txt", "content_hash": "h1",
        "chunk_count": 3, "tokens": 6}
    assert document["created_at"].tzinfo is not None
    assert store.get_document("alice", document["document_id"]) == document
    assert store.document_chunks("alice", document["document_id"]) == [
        {"document_id": document["document_id"], "index": 0, "content": "one two", "tokens": 2},
        {"document_id": document["document_id"], "index": 1, "content": "three", "tokens": 1},
        {"document_id": document["document_id"], "index": 2, "content": "four five six", "tokens": 3}]


def test_store_add_document_same_hash_returns_the_existing_one(store):
    first = add(store, name="draft.txt")
    again = add(store, name="final.txt", chunks=["different", "chunks", "entirely"])
    assert again["document_id"] == first["document_id"]
    assert again["file_name"] == "final.txt" and again["chunk_count"] == 2
    assert store.get_document("alice", first["document_id"])["file_name"] == "final.txt"
    assert [c["content"] for c in store.document_chunks("alice", first["document_id"])] == ["alpha beta", "gamma"]
    assert [d["document_id"] for d in store.list_documents("alice")] == [first["document_id"]]


def test_store_same_hash_for_another_user_is_their_own_document(store):
    mine = add(store, "alice", name="mine.txt")
    theirs = add(store, "bob", name="theirs.txt")
    assert theirs["document_id"] != mine["document_id"] and theirs["user_id"] == "bob"
    assert store.get_document("alice", mine["document_id"])["file_name"] == "mine.txt"
    assert len(store.document_chunks("bob", theirs["document_id"])) == 2


def test_store_list_documents_newest_first(store):
    ids = []
    for n in range(3):
        ids.append(add(store, content_hash=f"h{n}")["document_id"])
        time.sleep(0.005)  # timestamps keep milliseconds
    assert [d["document_id"] for d in store.list_documents("alice")] == ids[::-1]
    assert [d["document_id"] for d in store.list_documents("alice", limit=2)] == ids[:0:-1]


@pytest.mark.parametrize("chunks, tokens", [(["a", "b"], [1]), (["a"], [-1]), (["a"], [1.5]), ([7], [1])])
def test_store_add_document_rejects_bad_chunks(store, chunks, tokens):
    with pytest.raises(ValueError):
        store.add_document("alice", "x.txt", "h1", chunks, tokens)
    assert store.list_documents("alice") == []


def test_store_add_document_to_a_conversation_not_owned_raises(store):
    cid = store.create_conversation("alice")["conversation_id"]
    for conversation_id in (cid, "no-such-id"):
        with pytest.raises(NotFound):
            add(store, "bob", conversation_id=conversation_id)
    assert store.list_documents("bob") == []


def test_store_documents_are_invisible_to_other_users(store):
    document_id = add(store)["document_id"]
    assert store.get_document("bob", document_id) is None
    assert store.list_documents("bob") == []
    assert store.document_chunks("bob", document_id) == []
    assert store.delete_document("bob", document_id) is False
    assert store.get_document("alice", document_id)["file_name"] == "notes.txt"
    assert len(store.document_chunks("alice", document_id)) == 2


def test_store_delete_document_removes_its_chunks(store):
    document_id = add(store)["document_id"]
    assert store.delete_document("alice", document_id) is True
    assert store.get_document("alice", document_id) is None
    assert store.document_chunks("alice", document_id) == []
    assert store.delete_document("alice", document_id) is False
    assert add(store)["document_id"] != document_id  # the same file again is a new upload


def test_store_delete_conversation_takes_its_documents_clear_does_not(store):
    cid = store.create_conversation("alice")["conversation_id"]
    other = store.create_conversation("alice")["conversation_id"]
    inside = add(store, content_hash="in", conversation_id=cid)["document_id"]
    elsewhere = add(store, content_hash="other", conversation_id=other)["document_id"]
    loose = add(store, content_hash="loose")["document_id"]
    assert store.clear_messages("alice", cid)
    assert store.get_document("alice", inside) is not None
    assert store.delete_conversation("bob", cid) is False
    assert store.get_document("alice", inside) is not None
    assert store.delete_conversation("alice", cid)
    assert store.get_document("alice", inside) is None and store.document_chunks("alice", inside) == []
    assert {d["document_id"] for d in store.list_documents("alice")} == {elsewhere, loose}


def test_store_many_chunks_keep_their_order(store):
    chunks = [f"chunk number {i}" for i in range(300)]
    document = add(store, chunks=chunks)
    assert document["chunk_count"] == 300 and document["tokens"] == 900
    assert [c["content"] for c in store.document_chunks("alice", document["document_id"])] == chunks


def test_sqlite_five_megabyte_document_is_one_quick_insert(tmp_path):
    """~1,300 chunks of ~4,000 characters: one executemany transaction, FTS triggers included."""
    from storage.sqlite_store import SqliteStore
    chunks = [f"{i} " + ("lorem ipsum dolor sit amet penguin " * 115)[:4000] for i in range(1300)]
    with closing(SqliteStore(tmp_path / "big.sqlite3")) as store:
        store.migrate()
        started = time.perf_counter()
        document = store.add_document("alice", "big.txt", "big", chunks, [900] * len(chunks))
        elapsed = time.perf_counter() - started
        assert document["chunk_count"] == 1300 and elapsed < 1.0
        assert store.search_chunks("alice", "1299")[0]["index"] == 1299


# -- chunk search (mongomock has no $text: skipped there with the reason) ------------------------

@pytest.fixture
def penguins(search_store):
    """alice's penguin notes, and bob's copy under another name."""
    document = add(search_store, name="animals.txt", chunks=PENGUINS)
    add(search_store, "bob", name="bobs.txt", chunks=PENGUINS)
    return search_store, document


def test_store_search_chunks_ranks_most_mentions_first(penguins):
    store, document = penguins
    hits = store.search_chunks("alice", "penguin krill")
    assert [h["index"] for h in hits] == [1, 0]
    assert hits[0] == {"document_id": document["document_id"], "file_name": "animals.txt", "index": 1,
                       "content": PENGUINS[1], "tokens": len(PENGUINS[1].split()), "score": hits[0]["score"]}
    assert hits[0]["score"] > hits[1]["score"] > 0
    assert store.search_chunks("alice", "penguin krill", limit=1) == hits[:1]  # the best, not any one


def test_store_search_chunks_any_word_matches(penguins):
    store, _ = penguins
    hits = store.search_chunks("alice", "owls volcanoes unicorns")
    assert sorted(h["index"] for h in hits) == [2, 4]
    assert len(store.search_chunks("alice", "penguins owls bread volcanoes", limit=2)) == 2
    assert len(store.search_chunks("alice", "penguins owls bread volcanoes", limit=0)) == 0


def test_store_search_chunks_is_scoped_to_the_user(penguins):
    store, _ = penguins
    assert {h["file_name"] for h in store.search_chunks("bob", "penguin krill owls")} == {"bobs.txt"}
    assert store.search_chunks("carol", "penguin") == []
    alice_owner_token = "u" + b"alice".hex()  # the SQLite store's per-user FTS token
    assert store.search_chunks("bob", alice_owner_token) == []
    assert store.search_chunks("alice", alice_owner_token) == []


@pytest.mark.parametrize("query", ['"krill', "krill*", "NEAR(krill", "-krill", "content:krill", "owner:krill",
                                   "krill AND NOT penguin", "krill) OR (", "^krill", "{krill}"])
def test_store_search_chunks_ignores_search_syntax(penguins, query):
    store, _ = penguins
    hits = store.search_chunks("alice", query)
    assert hits and hits[0]["index"] == 1 and {h["file_name"] for h in hits} == {"animals.txt"}


def test_store_search_chunks_forgets_deleted_documents(penguins):
    store, document = penguins
    cid = store.create_conversation("alice")["conversation_id"]
    add(store, content_hash="owls", chunks=["Snowy owls"], conversation_id=cid)
    assert store.delete_document("alice", document["document_id"])
    assert store.search_chunks("alice", "penguin") == []
    assert [h["content"] for h in store.search_chunks("alice", "owls")] == ["Snowy owls"]
    store.delete_conversation("alice", cid)
    assert store.search_chunks("alice", "owls") == []
    assert len(store.search_chunks("bob", "penguin")) == 2


@pytest.mark.parametrize("query", ["", "   ", '"', "*", '"*"', "- : ()", "\x00"])
def test_store_search_chunks_without_words_is_empty(store, query):
    """No words means no search, so this runs on mongomock too."""
    add(store, chunks=PENGUINS)
    assert store.search_chunks("alice", query) == []


# -- background jobs ------------------------------------------------------------------------------

def test_store_job_lifecycle(store):
    cid = store.create_conversation("alice")["conversation_id"]
    job = store.create_job("alice", "summarise", conversation_id=cid)
    assert {k: job[k] for k in ("user_id", "kind", "conversation_id", "status", "done", "total", "result",
                                "error")} == {"user_id": "alice", "kind": "summarise", "conversation_id": cid,
                                              "status": "pending", "done": 0, "total": 0, "result": None,
                                              "error": None}
    assert job["created_at"] == job["updated_at"] and store.get_job("alice", job["job_id"]) == job
    time.sleep(0.005)
    assert store.update_job("alice", job["job_id"], status="processing", total=4)
    assert store.update_job("alice", job["job_id"], done=3)
    running = store.get_job("alice", job["job_id"])
    assert (running["status"], running["done"], running["total"]) == ("processing", 3, 4)
    assert running["updated_at"] > running["created_at"] == job["created_at"]
    result = {"summary": "It is about penguins.", "sources": [{"index": 1, "score": 0.5}], "ok": True}
    assert store.update_job("alice", job["job_id"], status="done", done=4, result=result)
    finished = store.get_job("alice", job["job_id"])
    assert (finished["status"], finished["done"], finished["total"]) == ("done", 4, 4)
    assert finished["result"] == result and finished["error"] is None


def test_store_job_can_fail_with_an_error(store):
    job_id = store.create_job("alice", "analyse")["job_id"]
    assert store.update_job("alice", job_id, status="error", error="model unreachable")
    failed = store.get_job("alice", job_id)
    assert (failed["status"], failed["error"], failed["result"], failed["conversation_id"]) == (
        "error", "model unreachable", None, None)


@pytest.mark.parametrize("changes", [{"status": "finished"}, {"status": "PENDING"}, {"status": ""},
                                     {"done": -1}, {"done": True}, {"total": "4"},
                                     {"result": ["not", "a", "dict"]}])
def test_store_update_job_rejects_bad_values(store, changes):
    job = store.create_job("alice", "analyse")
    with pytest.raises(ValueError):
        store.update_job("alice", job["job_id"], **changes)
    assert store.get_job("alice", job["job_id"]) == job


def test_store_every_job_status_is_accepted(store):
    job_id = store.create_job("alice", "analyse")["job_id"]
    for status in JOB_STATUSES:
        assert store.update_job("alice", job_id, status=status)
        assert store.get_job("alice", job_id)["status"] == status


def test_store_jobs_are_invisible_to_other_users(store):
    job = store.create_job("alice", "analyse")
    assert store.get_job("bob", job["job_id"]) is None
    assert store.update_job("bob", job["job_id"], status="error", error="pwned") is False
    assert store.get_job("alice", job["job_id"]) == job
    assert store.update_job("alice", "no-such-job", status="done") is False


# -- model output cache --------------------------------------------------------------------------

def test_store_cache_put_then_replace(store):
    assert store.cache_get("alice", "sha256:abc") is None
    store.cache_put("alice", "sha256:abc", "first answer")
    assert store.cache_get("alice", "sha256:abc") == "first answer"
    store.cache_put("alice", "sha256:abc", "second answer")
    assert store.cache_get("alice", "sha256:abc") == "second answer"


@pytest.mark.parametrize("value", [None, 42, b"bytes", {"a": 1}])
def test_store_cache_put_rejects_non_strings(store, value):
    with pytest.raises(ValueError):
        store.cache_put("alice", "k", value)
    assert store.cache_get("alice", "k") is None


def test_store_cache_is_per_user(store):
    store.cache_put("alice", "k", "alice's")
    assert store.cache_get("bob", "k") is None
    store.cache_put("bob", "k", "bob's")
    assert (store.cache_get("alice", "k"), store.cache_get("bob", "k")) == ("alice's", "bob's")


# -- message meta -------------------------------------------------------------------------------

def test_store_message_meta_round_trips(store):
    cid = store.create_conversation("alice")["conversation_id"]
    meta = {"route": "knowledge", "citations": [{"document_id": "d1", "index": 2}], "confidence": 0.75}
    message = store.append_message("alice", cid, "assistant", "Penguins eat krill.", meta=meta)
    plain = store.append_message("alice", cid, "user", "thanks")
    assert message["meta"] == meta and plain["meta"] is None
    assert store.get_message("alice", message["message_id"])["meta"] == meta
    assert [m["meta"] for m in store.list_messages("alice", cid)] == [meta, None]
    again = store.append_message("alice", cid, "assistant", "Penguins eat krill.", meta={"route": "chat"},
                                 message_id=message["message_id"])
    assert again["meta"] == meta  # an idempotent re-send returns the stored message unchanged


def test_store_message_meta_must_be_a_dict(store):
    cid = store.create_conversation("alice")["conversation_id"]
    with pytest.raises(ValueError):
        store.append_message("alice", cid, "user", "hi", meta=["not", "a", "dict"])
    assert store.list_messages("alice", cid) == []


# -- migrations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", STORE_KINDS)
def test_store_upgrade_from_version_2_keeps_messages(kind, tmp_path, monkeypatch):
    """A database made before version 3 gains the library and keeps its data; then nothing is pending."""
    module = importlib.import_module("storage.sqlite_store" if kind == "sqlite" else "storage.mongo_store")
    every = module.MIGRATIONS
    monkeypatch.setattr(module, "MIGRATIONS", every[:2])
    made = migrated_store(kind, tmp_path)
    store = next(made)
    try:
        cid = store.create_conversation("alice", "old")["conversation_id"]
        _message_as_version_2_wrote_it(store, kind, cid)
        monkeypatch.setattr(module, "MIGRATIONS", every)
        pending = [f"{v:04d} {d}" for v, d, _ in every[2:]]
        assert store.migrate(apply=False) == pending and store.migrate() == pending
        assert store.migrate() == []
        assert store.get_message("alice", "old")["meta"] is None
        assert [m["content"] for m in store.list_messages("alice", cid)] == ["written before version 3"]
        assert add(store, conversation_id=cid)["chunk_count"] == 2
    finally:
        next(made, None)  # the fixture's clean-up


def _message_as_version_2_wrote_it(store, kind: str, cid: str) -> None:
    """Today's code reads and writes `meta`, which version 2 lacks: write the row directly."""
    row = {"message_id": "old", "conversation_id": cid, "user_id": "alice", "role": "user",
           "content": "written before version 3", "tokens": 0}
    if kind == "sqlite":
        with closing(sqlite3.connect(store.path)) as db, db:
            db.execute("INSERT INTO messages (message_id, conversation_id, user_id, role, content, tokens, "
                       "created_at) VALUES (:message_id, :conversation_id, :user_id, :role, :content, :tokens, "
                       "'2025-01-01T00:00:00.000+00:00')", row)
    else:
        store.messages.insert_one({**row, "created_at": NOW, "seq": 1, "parent_message_id": None})


def test_init_db_creates_the_library_once(tmp_path):
    from config import TestConfig
    from init_db import initialize_db
    config = TestConfig(tmp_path)
    applied = initialize_db(config)
    assert [line[:5] for line in applied] == [f"{version:04d} " for version, _, _ in MIGRATIONS]  # all, in order
    assert initialize_db(config) == [] and initialize_db(config, check=True) == []
    with closing(sqlite3.connect(config.sqlite_path)) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    assert {"documents", "document_chunks", "document_chunks_fts", "jobs", "model_cache"} <= names
    assert "meta" in columns


def test_mongo_migrate_creates_library_indexes(mongo_store):
    indexes = {name: mongo_store.db[name].index_information()
               for name in ("documents", "document_chunks", "jobs", "model_cache")}
    expected = {("documents", "user_content_hash_idx"): [("user_id", 1), ("content_hash", 1)],
                ("documents", "document_id_idx"): [("document_id", 1)],
                ("document_chunks", "document_idx_idx"): [("document_id", 1), ("idx", 1)],
                ("jobs", "user_job_idx"): [("user_id", 1), ("job_id", 1)],
                ("model_cache", "user_key_idx"): [("user_id", 1), ("key", 1)]}
    for (collection, name), key in expected.items():
        assert list(indexes[collection][name]["key"]) == key and indexes[collection][name]["unique"] is True
    assert next(iter(indexes["document_chunks"]["chunk_text_idx"]["key"])) == ("user_id", 1)
    assert "documents_conversation_idx" in indexes["documents"]


VALID = {
    "documents": {"document_id": "d", "user_id": "u", "conversation_id": None, "file_name": "f.txt",
                  "content_hash": "h", "chunk_count": 1, "tokens": 1, "created_at": NOW},
    "document_chunks": {"document_id": "d", "user_id": "u", "idx": 0, "content": "x", "tokens": 1},
    "jobs": {"job_id": "j", "user_id": "u", "kind": "k", "conversation_id": None, "status": "pending", "done": 0,
             "total": 0, "result": None, "error": None, "created_at": NOW, "updated_at": NOW},
    "model_cache": {"user_id": "u", "key": "k", "value": "v", "created_at": NOW},
    "messages": {"message_id": "m", "conversation_id": "c", "user_id": "u", "role": "user", "content": "x",
                 "created_at": NOW, "tokens": 0, "seq": 1, "meta": {"route": "chat"}},
}


@pytest.mark.parametrize("collection, field, value", [
    ("documents", "chunk_count", -1), ("documents", "content_hash", None), ("document_chunks", "idx", -1),
    ("document_chunks", "content", 7), ("jobs", "status", "finished"), ("jobs", "result", "text"),
    ("model_cache", "value", 42), ("messages", "meta", "not an object")])
def test_mongo_library_validators_reject_bad_documents(mongo_store, collection, field, value):
    """The valid document goes in; the same with one bad field does not."""
    if mongo_store.mock:
        pytest.skip(MONGOMOCK_SKIP.format(what="$jsonSchema validators"))
    from pymongo.errors import WriteError
    mongo_store.db[collection].insert_one(dict(VALID[collection]))
    with pytest.raises(WriteError) as failure:
        mongo_store.db[collection].insert_one({**VALID[collection], field: value, "_id": "bad"})
    assert failure.value.code == 121  # DocumentValidationFailure, not a duplicate key
