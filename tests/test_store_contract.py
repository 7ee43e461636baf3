"""One contract, every store: the same tests run against SQLite, mongomock and (with
MONGODB_URI) a real MongoDB. Cases mongomock cannot run are skipped with the reason."""
import threading
import time

import pytest
from conftest import MONGOMOCK_SKIP

from storage import NotFound
from storage.mongo_migrations import MIGRATIONS


def test_store_create_and_get_conversation(store):
    conversation = store.create_conversation("alice", "First chat")
    loaded = store.get_conversation("alice", conversation["conversation_id"])
    assert loaded["title"] == "First chat"
    assert loaded["user_id"] == "alice"
    assert loaded["message_count"] == 0 and loaded["total_tokens"] == 0
    assert loaded["summary"] is None
    assert loaded["created_at"] == loaded["updated_at"]


def test_store_start_conversation_stores_the_first_message(store):
    conversation, message = store.start_conversation("alice", "Hello", "Hello there", tokens=4, message_id="m-1")
    cid = conversation["conversation_id"]
    assert message["message_id"] == "m-1" and message["role"] == "user" and message["conversation_id"] == cid
    assert [m["content"] for m in store.list_messages("alice", cid)] == ["Hello there"]
    loaded = store.get_conversation("alice", cid)
    assert loaded["title"] == "Hello" and loaded["message_count"] == 1 and loaded["total_tokens"] == 4
    assert store.get_conversation("bob", cid) is None
    again = store.start_conversation("alice", "Hello", "Hello there", tokens=4, message_id="m-1")  # a re-send
    assert again[0]["conversation_id"] == cid and again[1]["message_id"] == "m-1"
    assert len(store.list_conversations("alice")) == 1
    with pytest.raises(ValueError):
        store.start_conversation("alice", "Bad", "x", meta="not a dict")
    assert len(store.list_conversations("alice")) == 1
    turn = store.append_user_message("alice", cid, "And then?", tokens=3, parent_message_id="m-1")
    assert turn["role"] == "user" and turn["parent_message_id"] == "m-1"


def test_store_other_user_sees_nothing(store):
    cid = store.create_conversation("alice", "secret")["conversation_id"]
    store.append_message("alice", cid, "user", "my secret plan")
    assert store.get_conversation("bob", cid) is None
    assert store.list_messages("bob", cid) == []
    assert store.list_conversations("bob") == []
    assert store.rename_conversation("bob", cid, "pwned") is False
    assert store.delete_conversation("bob", cid) is False
    assert store.clear_messages("bob", cid) is False
    assert store.set_summary("bob", cid, "x", "m", 1) is False
    with pytest.raises(NotFound):
        store.append_message("bob", cid, "user", "hi")
    assert store.get_conversation("alice", cid)["title"] == "secret"
    assert len(store.list_messages("alice", cid)) == 1


def test_store_append_keeps_order_and_totals(store):
    cid = store.create_conversation("alice")["conversation_id"]
    first = store.append_message("alice", cid, "user", "one", tokens=5)
    second = store.append_message("alice", cid, "assistant", "two", tokens=7, parent_message_id=first["message_id"],
                                  agent="chat", finish_reason="stop")
    store.append_message("alice", cid, "user", "three", tokens=3, parent_message_id=second["message_id"])
    messages = store.list_messages("alice", cid)
    assert [m["content"] for m in messages] == ["one", "two", "three"]
    assert messages[1]["parent_message_id"] == first["message_id"]
    assert messages[1]["agent"] == "chat" and messages[1]["finish_reason"] == "stop"
    assert messages[1]["tokens"] == 7
    conversation = store.get_conversation("alice", cid)
    assert conversation["message_count"] == 3 and conversation["total_tokens"] == 15
    assert conversation["updated_at"] >= conversation["created_at"]


def test_store_append_same_message_id_is_idempotent(store):
    cid = store.create_conversation("alice")["conversation_id"]
    one = store.append_message("alice", cid, "user", "hello", tokens=2, message_id="client-1")
    again = store.append_message("alice", cid, "user", "hello", tokens=2, message_id="client-1")
    assert one["message_id"] == again["message_id"] == "client-1"
    assert len(store.list_messages("alice", cid)) == 1
    assert store.get_conversation("alice", cid)["total_tokens"] == 2


@pytest.mark.parametrize("role, finish_reason", [("robot", None), ("user", "exploded")])
def test_store_append_rejects_bad_fields(store, role, finish_reason):
    cid = store.create_conversation("alice")["conversation_id"]
    with pytest.raises(ValueError):
        store.append_message("alice", cid, role, "x", finish_reason=finish_reason)
    assert store.list_messages("alice", cid) == []


def test_store_append_to_missing_conversation_raises(store):
    with pytest.raises(NotFound):
        store.append_message("alice", "no-such-id", "user", "hi")


def test_store_list_conversations_newest_activity_first(store):
    old = store.create_conversation("alice", "old")["conversation_id"]
    time.sleep(0.005)  # timestamps keep milliseconds
    new = store.create_conversation("alice", "new")["conversation_id"]
    time.sleep(0.005)
    store.append_message("alice", old, "user", "bump")
    listed = store.list_conversations("alice")
    assert [c["conversation_id"] for c in listed] == [old, new]
    assert [c["conversation_id"] for c in store.list_conversations("alice", limit=1, offset=1)] == [new]


def test_store_rename_delete_and_clear(store):
    cid = store.create_conversation("alice", "before")["conversation_id"]
    store.append_message("alice", cid, "user", "hello there", tokens=3)
    store.set_summary("alice", cid, "a greeting", "m1", 4)
    assert store.rename_conversation("alice", cid, "after")
    assert store.get_conversation("alice", cid)["title"] == "after"
    assert store.clear_messages("alice", cid)
    cleared = store.get_conversation("alice", cid)
    assert cleared["message_count"] == 0 and cleared["total_tokens"] == 0 and cleared["summary"] is None
    assert store.list_messages("alice", cid) == []
    assert store.delete_conversation("alice", cid)
    assert store.get_conversation("alice", cid) is None
    assert store.delete_conversation("alice", cid) is False


def test_store_summary_checkpoint_round_trips(store):
    cid = store.create_conversation("alice")["conversation_id"]
    message = store.append_message("alice", cid, "user", "long talk")
    assert store.set_summary("alice", cid, "They talked.", message["message_id"], 3)
    summary = store.get_conversation("alice", cid)["summary"]
    assert summary == {"content": "They talked.", "last_message_id": message["message_id"], "tokens": 3}


def test_store_concurrent_appends_lose_nothing(store):
    cid = store.create_conversation("alice")["conversation_id"]

    def writer(name):
        for i in range(25):
            store.append_message("alice", cid, "user", f"{name}-{i}", tokens=1)

    threads = [threading.Thread(target=writer, args=(name,)) for name in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = store.list_messages("alice", cid)
    assert len(messages) == 100
    for name in "abcd":
        mine = [m["content"] for m in messages if m["content"].startswith(name)]
        assert mine == [f"{name}-{i}" for i in range(25)]
    assert store.get_conversation("alice", cid)["total_tokens"] == 100


def test_store_migrate_is_idempotent(store):
    assert store.migrate() == []
    assert store.migrate(apply=False) == []


def test_store_ping(store):
    assert store.ping() is True


# -- search (mongomock has no $text: skipped there with the reason) -------------------------

def test_store_search_ranks_and_points_at_the_message(search_store):
    store = search_store
    cid = store.create_conversation("alice", "Travel plans")["conversation_id"]
    store.append_message("alice", cid, "user", "What should I pack for a trip?")
    hit = store.append_message("alice", cid, "assistant", "For Iceland pack a warm jacket. Iceland is cold.")
    other = store.create_conversation("alice", "Cooking")["conversation_id"]
    store.append_message("alice", other, "user", "Is Iceland moss edible in soup?")
    results = store.search("alice", "iceland jacket")
    assert [r["conversation_id"] for r in results] == [cid]
    assert results[0]["message_id"] == hit["message_id"]
    assert results[0]["title"] == "Travel plans"
    snippet, highlights = results[0]["snippet"], results[0]["highlights"]
    assert {snippet[a:b].lower() for a, b in highlights} >= {"iceland", "jacket"}
    assert [r["conversation_id"] for r in store.search("alice", "iceland")][:2] != []


def test_store_search_finds_titles(search_store):
    cid = search_store.create_conversation("alice", "Quarterly budget review")["conversation_id"]
    results = search_store.search("alice", "budget")
    assert results and results[0]["conversation_id"] == cid


def test_store_search_stemming(search_store):
    cid = search_store.create_conversation("alice")["conversation_id"]
    search_store.append_message("alice", cid, "user", "I was running through databases all day")
    assert search_store.search("alice", "runs")[0]["conversation_id"] == cid


def test_store_search_prefix(store):
    """Prefix search needs no $text on MongoDB, so it runs on every store."""
    cid = store.create_conversation("alice", "Database notes")["conversation_id"]
    hit = store.append_message("alice", cid, "user", "I was running through databases all day")
    store.append_message("bob", store.create_conversation("bob")["conversation_id"], "user", "databases")
    results = store.search("alice", "datab*")
    assert [r["conversation_id"] for r in results] == [cid]
    assert results[0]["message_id"] in (hit["message_id"], None)
    assert store.search("alice", "atab*") == []


def test_store_search_is_scoped_to_the_user(search_store):
    cid = search_store.create_conversation("alice", "zebra stripes")["conversation_id"]
    search_store.append_message("alice", cid, "user", "zebra crossing")
    assert search_store.search("bob", "zebra") == []
    assert search_store.search("alice", "zebra")[0]["conversation_id"] == cid


@pytest.mark.parametrize("query", ["", "   ", '"', "AND OR NOT", "NEAR(a b", "*", "col:val", "\x00", "ü" * 500])
def test_store_search_survives_hostile_queries(search_store, query):
    search_store.create_conversation("alice", "anything")
    assert isinstance(search_store.search("alice", query), list)


def test_store_search_forgets_deleted_messages(search_store):
    cid = search_store.create_conversation("alice")["conversation_id"]
    search_store.append_message("alice", cid, "user", "platypus facts")
    search_store.clear_messages("alice", cid)
    assert search_store.search("alice", "platypus") == []


# -- MongoDB only: what migrate() builds ------------------------------------------

def test_mongo_migrate_creates_named_indexes(mongo_store):
    store = mongo_store
    conversations = store.db["conversations"].index_information()
    messages = store.db["messages"].index_information()
    assert conversations["conversation_user_idx"]["unique"] is True
    assert list(conversations["conversation_user_idx"]["key"]) == [("conversation_id", 1), ("user_id", 1)]
    assert list(conversations["created_at_idx"]["key"]) == [("created_at", -1)]
    assert "user_updated_idx" in conversations
    assert messages["message_id_idx"]["unique"] is True
    assert {"conversation_seq_idx", "messages_created_at_idx", "user_created_idx"} <= set(messages)
    for index in (conversations["title_text_idx"], messages["content_text_idx"]):
        assert next(iter(index["key"])) == ("user_id", 1)  # every $text query is scoped to one user
    applied = sorted(doc["_id"] for doc in store.db["schema_migrations"].find())
    assert applied == [version for version, _, _ in MIGRATIONS] and applied[:2] == [1, 2]


def test_mongo_validator_rejects_bad_documents(mongo_store):
    if mongo_store.mock:
        pytest.skip(MONGOMOCK_SKIP.format(what="$jsonSchema validators"))
    from pymongo.errors import WriteError
    with pytest.raises(WriteError):
        mongo_store.db["messages"].insert_one({"message_id": "bad", "role": "robot"})


def test_store_get_message_by_id_is_scoped_to_the_user(store):
    cid = store.create_conversation("alice")["conversation_id"]
    message = store.append_message("alice", cid, "user", "hello", tokens=2)
    assert store.get_message("alice", message["message_id"]) == message
    assert store.get_message("bob", message["message_id"]) is None
    assert store.get_message("alice", "no-such-id") is None


def test_store_upload_bytes_per_user_and_in_total(store):
    assert store.upload_bytes("alice") == store.upload_bytes(None) == 0
    store.add_document("alice", "a.txt", "h1", ["x"], [1], size_bytes=1000)
    store.add_document("alice", "b.txt", "h2", ["y"], [1], size_bytes=500)
    store.add_document("bob", "c.txt", "h3", ["z"], [1], size_bytes=7)
    store.add_document("alice", "a-again.txt", "h1", ["x"], [1], size_bytes=1000)  # the same file: not twice
    assert (store.upload_bytes("alice"), store.upload_bytes("bob"), store.upload_bytes(None)) == (1500, 7, 1507)


def test_store_storage_bytes_counts_each_users_message_bytes(store):
    first = store.create_conversation("alice")["conversation_id"]
    second = store.create_conversation("alice")["conversation_id"]
    store.append_message("alice", first, "user", "héllo")  # 6 bytes in UTF-8
    store.append_message("alice", second, "assistant", "日本", agent="chat", finish_reason="stop")  # 6 bytes
    store.append_message("alice", second, "user", "again", message_id="m-1")
    store.append_message("alice", second, "user", "again", message_id="m-1")  # a re-send stores nothing
    bob = store.create_conversation("bob")["conversation_id"]
    store.append_message("bob", bob, "user", "x" * 100)
    assert store.storage_bytes("alice") == 17 and store.storage_bytes("bob") == 100
    assert store.storage_bytes("nobody") == 0
    store.clear_messages("alice", second)
    assert store.storage_bytes("alice") == 6
    store.delete_conversation("alice", first)
    assert store.storage_bytes("alice") == 0 and store.storage_bytes("bob") == 100


def test_store_compact_journal_is_safe_to_call_any_time(store):
    cid = store.create_conversation("alice")["conversation_id"]
    store.append_message("alice", cid, "user", "hello")
    assert store.compact_journal() is True
    assert [m["content"] for m in store.list_messages("alice", cid)] == ["hello"]


def test_store_migration_counts_messages_stored_before_it(store):
    """Conversations stored before the storage quota existed get their bytes counted by the migration."""
    cid = store.create_conversation("alice")["conversation_id"]
    store.append_message("alice", cid, "user", "héllo")
    if store.backend == "sqlite":
        from storage.sqlite_migrations import MIGRATIONS as SQLITE_MIGRATIONS
        from storage.sqlite_store import _statements
        sql = next(sql for _, description, sql in SQLITE_MIGRATIONS if "content_bytes" in description)
        with store._write() as db:
            db.execute("UPDATE conversations SET content_bytes = 0")
            db.execute(_statements(sql)[1])  # the back-fill (the column exists already)
    else:
        store.conversations.update_many({}, {"$unset": {"content_bytes": ""}})
        step = next(step for _, description, step in MIGRATIONS if "content_bytes" in description)
        step(store.db, store.mock)
    assert store.storage_bytes("alice") == 6


# -- the branch a turn reads (branch_since) ------------------------------------------------------

def _random_tree(store, seed: int, size: int = 40) -> tuple[str, list[str]]:
    """A conversation exercising every parent rule of threads.py: plain sends, replies, branches,
    edits (of roots and of edits), and the odd cases: a parent that is missing, itself, stored
    later, or in another conversation; an edit_of that is not a string or not stored before."""
    import random
    rng = random.Random(seed)
    cid = store.create_conversation("alice")["conversation_id"]
    elsewhere = store.create_conversation("alice")["conversation_id"]
    stranger = store.append_message("alice", elsewhere, "user", "elsewhere")["message_id"]
    ids = [f"{seed}-{n}" for n in range(size)]
    for n, message_id in enumerate(ids):
        parent, meta = None, None
        kind = rng.random()
        if kind < 0.35 and n:
            parent = rng.choice(ids[:n])
        elif kind < 0.5 and n:
            meta = {"edit_of": rng.choice(ids[:n])}
            parent = rng.choice([None, parent])
        elif kind < 0.55:
            parent = rng.choice(["missing", message_id, stranger, ids[min(n + 2, size - 1)]])
        elif kind < 0.6:
            meta = {"edit_of": rng.choice([7, ids[min(n + 1, size - 1)], message_id, None])}
        store.append_message("alice", cid, rng.choice(["user", "assistant"]), f"text {n}", tokens=n,
                             parent_message_id=parent, message_id=message_id, meta=meta)
    return cid, ids


@pytest.mark.parametrize("seed", range(6))
def test_store_branch_since_is_the_thread_since_the_checkpoint(store, seed, monkeypatch):
    """branch_since answers exactly what threads.thread over every message then cutting at the
    checkpoint answers, for every leaf and checkpoint (on the path, off it, none, unknown)."""
    import threads
    monkeypatch.setattr("storage.mongo_branch.PAGE", 3)  # Mongo's walk then crosses many pages
    cid, ids = _random_tree(store, seed)
    stored = store.list_messages("alice", cid)
    for leaf in ids + ["no-such-leaf"]:
        for checkpoint in (None, "no-such-message", *ids[::3]):
            expected = threads.since(threads.thread(stored, leaf), checkpoint)
            assert store.branch_since("alice", cid, leaf, checkpoint) == expected, (leaf, checkpoint)


def test_store_branch_since_is_scoped_to_the_user_and_conversation(store):
    cid = store.create_conversation("alice")["conversation_id"]
    first = store.append_message("alice", cid, "user", "hi")
    assert store.branch_since("bob", cid, first["message_id"]) == []
    other = store.create_conversation("alice")["conversation_id"]
    assert store.branch_since("alice", other, first["message_id"]) == []
    assert store.branch_since("alice", cid, first["message_id"]) == [first]


def test_store_branch_since_survives_a_parent_cycle(store):
    """Two messages naming each other as parent (only a direct store call can do that) end the walk."""
    cid = store.create_conversation("alice")["conversation_id"]
    store.append_message("alice", cid, "user", "a", message_id="cycle-a", parent_message_id="cycle-b")
    store.append_message("alice", cid, "assistant", "b", message_id="cycle-b", parent_message_id="cycle-a")
    path = store.branch_since("alice", cid, "cycle-b")
    assert [m["message_id"] for m in path] == ["cycle-a", "cycle-b"]


def test_store_set_summary_compare_and_set(store):
    """With `extends`, a summary is stored only over the checkpoint it was made from."""
    cid = store.create_conversation("alice")["conversation_id"]
    assert store.set_summary("alice", cid, "s1", "m1", 10, extends=None) is True
    assert store.set_summary("alice", cid, "racer", "m1", 12, extends=None) is False
    assert store.set_summary("alice", cid, "s2", "m5", 11, extends="m1") is True
    assert store.set_summary("alice", cid, "stale", "m4", 11, extends="m1") is False
    assert store.get_conversation("alice", cid)["summary"] == {"content": "s2", "last_message_id": "m5", "tokens": 11}
    assert store.set_summary("alice", cid, "forced", "m6", 3) is True  # without extends: unconditional
    assert store.set_summary("bob", cid, "x", "m7", 1, extends="m6") is False


def test_mongo_migration_indexes_the_branch_walk(mongo_store):
    index = mongo_store.db["messages"].index_information()["conversation_seq_id_idx"]
    assert list(index["key"]) == [("conversation_id", 1), ("seq", 1), ("_id", 1)]
