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
