"""Search by meaning, store side: the local model, the vector contract of both stores (scoping,
deletes, the backlog), the background indexer and the back-fill."""
import hashlib

import numpy as np
import pytest
from conftest import run_under_eventlet

from semantic import indexer, model
from storage.vectors import pack, top_k


@pytest.fixture(scope="module")
def embedder():
    return model.shared()


def _vec(*values):
    return pack(np.asarray(values, dtype=np.float32))


def _message(store, user, text, cid=None):
    cid = cid or store.create_conversation(user, "")["conversation_id"]
    return cid, store.append_message(user, cid, "user", text)


def _index(store, embedder):
    """What the background indexer does, from the first item."""
    step = indexer.Indexer(store, embedder, batch=8, start={"message": None, "chunk": None})
    while step.step():
        pass


# -- the model ---------------------------------------------------------------------------------

def test_model_files_match_their_pinned_hashes():
    onnx, tokenizer = model.model_files()
    assert hashlib.sha256(onnx.read_bytes()).hexdigest() == model.MODEL_SHA256
    assert hashlib.sha256(tokenizer.read_bytes()).hexdigest() == model.TOKENIZER_SHA256


def test_a_file_that_does_not_match_its_hash_is_refused(tmp_path):
    forged = tmp_path / "model.onnx"
    forged.write_bytes(b"not the model")
    with pytest.raises(model.ModelUnavailable, match="sha256"):
        model._verified(forged, model.MODEL_SHA256)


def test_vectors_are_unit_length_and_paraphrases_are_nearer_than_strangers(embedder):
    vectors = embedder.encode(["How long should sourdough proof before baking?",
                               "Fermented loaf: how much rising time?",
                               "My kubernetes pod keeps restarting", ""])
    assert vectors.shape == (4, model.DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.4 > vectors[0] @ vectors[2]
    assert embedder.encode([]).shape == (0, model.DIMENSIONS)


def test_top_k_ranks_by_cosine_and_skips_vectors_of_another_size():
    blobs = [_vec(1, 0), _vec(0, 1), _vec(1, 1), _vec(1, 0, 0)]
    assert [i for i, _ in top_k([1, 0.1], blobs, 2)] == [0, 2]
    assert top_k([0, 0], blobs, 2) == [] and top_k([1, 0], [], 3) == []


# -- the store contract (SQLite and MongoDB) -----------------------------------------------------

def test_store_vectors_are_scoped_to_their_user(store):
    cid, alice = _message(store, "alice", "my secret plan")
    _, bob = _message(store, "bob", "bob's own note")
    backlog = store.vector_backlog("message", None, 10)
    assert [item["text"] for item in backlog] == ["my secret plan", "bob's own note"]
    assert store.put_vectors("message", [(backlog[0]["key"], _vec(1, 0)), (backlog[1]["key"], _vec(0, 1))]) == 2
    mine = store.search_vectors("alice", [1, 0], query="plan")
    assert [(h["conversation_id"], h["message_id"]) for h in mine] == [(cid, alice["message_id"])]
    assert mine[0]["snippet"] == "my secret plan" and mine[0]["highlights"] == [[10, 14]]
    assert mine[0]["score"] == pytest.approx(1.0)
    theirs = store.search_vectors("bob", [1, 0])
    assert [h["message_id"] for h in theirs] == [bob["message_id"]]  # never alice's, however near
    assert store.search_vectors("carol", [1, 0]) == []


def test_store_vector_search_gives_one_hit_per_conversation_nearest_first(store):
    cid, _ = _message(store, "alice", "far")
    store.append_message("alice", cid, "assistant", "near")
    other, _ = _message(store, "alice", "middle")
    store.put_vectors("message", [(item["key"], _vec(*{"far": (0, 1), "near": (1, 0), "middle": (1, 1)}[item["text"]]))
                                  for item in store.vector_backlog("message", None, 10)])
    hits = store.search_vectors("alice", [1, 0], limit=5)
    assert [(h["conversation_id"], h["snippet"]) for h in hits] == [(cid, "near"), (other, "middle")]
    assert store.search_vectors("alice", [1, 0], limit=5, candidates=1)[0]["snippet"] == "middle"  # newest only


def test_store_vectors_go_with_their_message_conversation_and_document(store):
    cid, _ = _message(store, "alice", "to be deleted")
    kept, _ = _message(store, "alice", "to be kept")
    cleared, _ = _message(store, "alice", "to be cleared")
    document = store.add_document("alice", "a.txt", "h1", ["chunk one", "chunk two"], [2, 2], conversation_id=cid)
    other = store.add_document("alice", "b.txt", "h2", ["lone chunk"], [2])
    for kind in ("message", "chunk"):
        store.put_vectors(kind, [(item["key"], _vec(1, 0)) for item in store.vector_backlog(kind, None, 10)])
    assert store.vector_counts("message") == (3, 3) and store.vector_counts("chunk") == (3, 3)
    assert store.delete_conversation("alice", cid)
    assert store.vector_counts("message") == (2, 2) and store.vector_counts("chunk") == (1, 1)
    assert store.get_document("alice", document["document_id"]) is None
    assert store.clear_messages("alice", cleared)
    assert store.vector_counts("message") == (1, 1)
    assert store.delete_document("alice", other["document_id"])
    assert store.vector_counts("chunk") == (0, 0)
    assert [h["conversation_id"] for h in store.search_vectors("alice", [1, 0])] == [kept]


def test_store_put_vectors_skips_items_deleted_meanwhile(store):
    cid, _ = _message(store, "alice", "gone soon")
    backlog = store.vector_backlog("message", None, 10)
    store.delete_conversation("alice", cid)
    assert store.put_vectors("message", [(backlog[0]["key"], _vec(1, 0))]) == 0
    assert store.vector_counts("message") == (0, 0)


def test_store_backlog_resumes_after_its_cursor_and_skips_what_has_a_vector(store):
    for text in ("one", "two", "three"):
        _message(store, "alice", text)
    first = store.vector_backlog("message", None, 2)
    assert [item["text"] for item in first] == ["one", "two"]
    assert [item["text"] for item in store.vector_backlog("message", first[-1]["pos"], 2)] == ["three"]
    store.put_vectors("message", [(first[0]["key"], _vec(1, 0))])
    assert [item["text"] for item in store.vector_backlog("message", None, 5)] == ["two", "three"]
    assert store.vector_start("message") == first[0]["pos"]  # the newest item with a vector


def test_store_vector_start_on_an_old_store_is_its_newest_item(store):
    assert store.vector_start("message") in (0, None)  # an empty store: everything is new
    _message(store, "alice", "old")
    newest = store.vector_backlog("message", None, 5)[-1]["pos"]
    assert store.vector_start("message") == newest
    assert store.vector_backlog("message", store.vector_start("message"), 5) == []


def test_store_chunk_vectors_cite_like_keyword_chunks(store):
    document = store.add_document("alice", "report.pdf", "h", ["Revenue grew.", "Costs fell."], [2, 2],
                                  chunk_meta=[{"pages": [1]}, {"pages": [2]}])
    store.add_document("bob", "theirs.txt", "h", ["Costs fell for bob."], [4])
    vectors = {"Revenue grew.": (1, 0), "Costs fell.": (0, 1), "Costs fell for bob.": (0, 1)}
    store.put_vectors("chunk", [(item["key"], _vec(*vectors[item["text"]]))
                                for item in store.vector_backlog("chunk", None, 10)])
    hits = store.search_chunk_vectors("alice", [0, 1], limit=5)
    assert [(h["file_name"], h["index"], h["meta"]) for h in hits] == [("report.pdf", 1, {"pages": [2]}),
                                                                       ("report.pdf", 0, {"pages": [1]})]
    assert hits[0]["document_id"] == document["document_id"] and hits[0]["content"] == "Costs fell."
    assert [h["file_name"] for h in store.search_chunk_vectors("bob", [0, 1])] == ["theirs.txt"]


def test_store_vectors_follow_records_an_account_adopts(store):
    cid, _ = _message(store, "anon", "adopted words")
    store.put_vectors("message", [(item["key"], _vec(1, 0)) for item in store.vector_backlog("message", None, 5)])
    store.move_user_data("anon", "account")
    assert store.search_vectors("anon", [1, 0]) == []
    assert [h["conversation_id"] for h in store.search_vectors("account", [1, 0])] == [cid]


def test_store_vector_kind_is_checked(store):
    with pytest.raises(ValueError, match="kind"):
        store.vector_backlog("images", None, 5)


# -- the indexer and the back-fill ----------------------------------------------------------------

def test_indexer_embeds_new_messages_and_chunks_after_its_start(store, embedder):
    _message(store, "alice", "stored before the indexer started")
    live = indexer.Indexer(store, embedder)
    _, message = _message(store, "alice", "How long should sourdough proof before baking?")
    store.add_document("alice", "notes.txt", "h", ["The boiler is serviced every autumn."], [7])
    assert live.step() == 2 and live.step() == 0
    assert store.vector_counts("message") == (1, 2)  # the older one is the back-fill's
    hit = store.search_vectors("alice", embedder.encode(["fermented loaf rising time"])[0])[0]
    assert hit["message_id"] == message["message_id"]
    chunk = store.search_chunk_vectors("alice", embedder.encode(["heating maintenance schedule"])[0])[0]
    assert chunk["file_name"] == "notes.txt"


def test_indexer_lets_replies_go_first_but_not_for_ever(store, embedder, monkeypatch):
    """While replies stream it waits; under load that never ends it still embeds once a minute."""
    live = indexer.Indexer(store, embedder)
    _message(store, "alice", "stored while replies were streaming")
    clock, naps, batches = [1000.0], [], []
    monkeypatch.setattr(indexer.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(live, "step", lambda: batches.append(clock[0]) or 0)

    def nap(seconds):
        naps.append(seconds)
        clock[0] += 1.0
    live.run(nap, poll_s=1.0, stop=lambda: len(naps) >= 70, busy=lambda: True)
    assert batches == [1000.0 + indexer.MAX_DEFER_S]  # 60 naps of waiting, then one batch
    batches.clear()
    naps.clear()
    live.run(nap, poll_s=1.0, stop=lambda: len(naps) >= 3, busy=lambda: False)
    assert len(batches) == 3  # idle: a batch at every turn


def test_backfill_embeds_everything_reports_progress_and_resumes(store, embedder):
    for i in range(5):
        _message(store, "alice", f"message number {i}")
    store.add_document("alice", "a.txt", "h", ["one chunk"], [2])
    store.put_vectors("message", [(store.vector_backlog("message", None, 1)[0]["key"], pack(embedder.encode(["x"])[0]))])
    progress = []
    assert indexer.backfill(store, embedder, batch=2, report=lambda *row: progress.append(row), report_every=1) == 5
    assert progress[-1] == ("chunk", 1, 1) and ("message", 3, 5) in progress and ("message", 5, 5) in progress
    assert indexer.backfill(store, embedder) == 0  # run again: nothing left


def test_init_db_embed_backfills_the_configured_store(tmp_path, monkeypatch, capsys, embedder):
    import init_db
    from storage.sqlite_store import SqliteStore
    path = tmp_path / "chat.sqlite3"
    monkeypatch.setenv("SQLITE_PATH", str(path))
    monkeypatch.delenv("MONGODB_URI", raising=False)
    old = SqliteStore(path)
    old.migrate()
    _message(old, "alice", "stored before vectors existed")
    old.close()
    assert init_db.main(["--embed"]) == 0
    out = capsys.readouterr().out
    assert "messages: 1/1 embedded" in out and "embedded 1 items" in out
    again = SqliteStore(path)
    assert again.vector_counts("message") == (1, 1)
    again.close()


def test_a_model_that_cannot_load_is_said_once_and_tried_once(tmp_path, monkeypatch, capsys):
    import init_db
    tries = []

    def broken():
        tries.append(1)
        raise model.ModelUnavailable("model.onnx does not match its sha256")
    monkeypatch.setattr(model, "_shared", None)
    monkeypatch.setattr(model, "_failed", None)
    monkeypatch.setattr(model, "Embedder", broken)
    for _ in range(3):
        with pytest.raises(model.ModelUnavailable, match="sha256"):
            model.shared()
    assert len(tries) == 1  # not re-read and re-hashed at every search
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "chat.sqlite3"))
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert init_db.main(["--embed"]) == 2
    assert capsys.readouterr().err.strip().endswith("cannot embed: model.onnx does not match its sha256")


INDEXING_UNDER_EVENTLET = """
    import sys
    from semantic import indexer, model
    from storage.sqlite_store import SqliteStore
    store = SqliteStore(sys.argv[1])
    store.migrate()
    cid = store.create_conversation("alice", "")["conversation_id"]
    for i in range(48):
        store.append_message("alice", cid, "user", f"message {i} about " + "a rather long topic " * 12)
    run = indexer.Indexer(store, model.shared(), batch=16, start={"message": None, "chunk": None})
    eventlet.sleep(0.01)
    ticks.clear()
    started = time.perf_counter()
    while run.step():
        pass
    took = time.perf_counter() - started
    assert store.vector_counts("message") == (48, 48)
    longest = max(b - a for a, b in zip([started, *ticks], ticks))
    # Three batches of 16 on the hub would stall it for a third of the time each.
    assert longest < took / 6, f"the hub stalled {longest:.3f} s in {took:.3f} s of embedding"
    print("ok")
"""


def test_indexing_runs_the_model_off_the_eventlet_hub(tmp_path):
    run_under_eventlet(INDEXING_UNDER_EVENTLET, tmp_path, str(tmp_path / "eventlet.sqlite3"))
