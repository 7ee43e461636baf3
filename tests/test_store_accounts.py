"""Accounts in both stores, and an anonymous user's records moving to the account it logs in to."""
import pytest

from storage.base import AccountExists


def test_store_account_is_found_by_any_case_and_unique(store):
    made = store.create_account("Alice", "hash-1", "uid-alice")
    assert (made["username"], made["password_hash"], made["user_id"]) == ("Alice", "hash-1", "uid-alice")
    assert store.get_account("aLiCe")["user_id"] == "uid-alice"
    assert store.get_account("bob") is None
    with pytest.raises(AccountExists):
        store.create_account("ALICE", "hash-2", "uid-other")


def anonymous_user_with_everything(store, user_id="anon"):
    cid = store.create_conversation(user_id, "Lighthouse keeping")["conversation_id"]
    store.append_message(user_id, cid, "user", "How do lighthouse lenses work?")
    store.append_message(user_id, cid, "assistant", "Fresnel lenses bend light into a beam.")
    document = store.add_document(user_id, "notes.txt", "hash-notes", ["fresnel chunk text"], [3])
    job = store.create_job(user_id, "file_analysis", cid)
    store.cache_put(user_id, "key-1", "cached analysis")
    return cid, document, job


def test_store_move_user_data_gives_every_record_to_the_account(store):
    cid, document, job = anonymous_user_with_everything(store)
    assert store.move_user_data("anon", "account") == 1
    assert [c["conversation_id"] for c in store.list_conversations("account")] == [cid]
    assert [m["role"] for m in store.list_messages("account", cid)] == ["user", "assistant"]
    assert store.get_document("account", document["document_id"]) is not None
    assert [c["content"] for c in store.document_chunks("account", document["document_id"])] == ["fresnel chunk text"]
    assert store.get_job("account", job["job_id"])["conversation_id"] == cid
    assert store.cache_get("account", "key-1") == "cached analysis"
    assert store.list_conversations("anon") == [] and store.list_documents("anon") == []
    assert store.get_conversation("anon", cid) is None and store.cache_get("anon", "key-1") is None
    assert store.move_user_data("anon", "account") == 0  # nothing left: a repeated move is harmless


def test_store_move_keeps_the_accounts_own_copy_of_a_shared_document(store):
    kept = store.add_document("account", "mine.txt", "hash-notes", ["the account's text"], [3])
    store.cache_put("account", "key-1", "the account's analysis")
    anonymous_user_with_everything(store)
    store.move_user_data("anon", "account")
    assert [d["document_id"] for d in store.list_documents("account")] == [kept["document_id"]]
    assert store.cache_get("account", "key-1") == "the account's analysis"
    assert store.list_documents("anon") == []


def test_store_moved_records_are_found_by_the_new_owners_search(search_store):
    store = search_store
    cid, document, _ = anonymous_user_with_everything(store)
    store.move_user_data("anon", "account")
    assert [r["conversation_id"] for r in store.search("account", "fresnel")] == [cid]
    assert [r["conversation_id"] for r in store.search("account", "lighthouse")] == [cid]  # title
    assert store.search("anon", "fresnel") == []
    assert [c["document_id"] for c in store.search_chunks("account", "fresnel")] == [document["document_id"]]
    assert store.search_chunks("anon", "fresnel") == []


# -- invites: single-use registration codes ---------------------------------------------------------

def in_days(days: float):
    from datetime import timedelta

    from storage.base import utcnow
    return utcnow() + timedelta(days=days)


def test_store_invite_is_used_once(store):
    made = store.create_invite("key-1", "admin", in_days(7))
    assert (made["code_key"], made["created_by"], made["used_at"], made["used_by"]) == ("key-1", "admin", None, None)
    assert abs((made["expires_at"] - in_days(7)).total_seconds()) < 5
    assert store.consume_invite("key-1", "bob") is True
    assert store.consume_invite("key-1", "carol") is False
    used = store.get_invite("key-1")
    assert used["used_by"] == "bob" and used["used_at"] is not None
    assert store.consume_invite("no-such-key", "bob") is False and store.get_invite("no-such-key") is None


def test_store_invite_expires(store):
    store.create_invite("old", "admin", in_days(1))
    assert store.consume_invite("old", "bob", now=in_days(2)) is False
    assert store.get_invite("old")["used_at"] is None
    assert store.consume_invite("old", "bob", now=in_days(0.5)) is True


def test_store_released_invite_can_be_used_again_by_another(store):
    store.create_invite("key-1", "admin", in_days(7))
    assert store.consume_invite("key-1", "taken-name")
    assert store.release_invite("key-1", "someone-else") is False  # only the one who used it gives it back
    assert store.release_invite("key-1", "taken-name") is True
    assert store.consume_invite("key-1", "bob") is True


def test_store_parallel_consumers_of_one_invite_get_it_once(store):
    import threading
    store.create_invite("key-1", "admin", in_days(7))
    start, results = threading.Barrier(8), []

    def consume(n):
        start.wait()
        results.append(store.consume_invite("key-1", f"user-{n}"))
    threads = [threading.Thread(target=consume, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
