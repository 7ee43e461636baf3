"""`/upload_file`: validation (type, size, binary sniffing, encodings) and the analysis job."""
import io
import time

import pytest
from fake_llm import Fault
from werkzeug.datastructures import FileStorage
from werkzeug.test import stream_encode_multipart


def post_upload(client, name, data, **form):
    return post_file(client, "/upload_file", name, data, **form)


def post_file(client, path, name, data, **form):
    """Encoded in memory: werkzeug's test client spools a body over 500 KB to a temporary file it never
    closes, and the ResourceWarning would surface in whichever test the garbage collector runs."""
    upload = FileStorage(io.BytesIO(data), filename=name, content_type="application/octet-stream")
    body, length, boundary = stream_encode_multipart({"file": upload, **form}, use_tempfile=False)
    return client.post(path, data=body.read(), content_type=f"multipart/form-data; boundary={boundary}",
                       headers={"Content-Length": str(length)})


def wait_for_job(client, job_id, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = client.get(f"/jobs/{job_id}").get_json()
        if body["status"] in ("done", "error"):
            return body
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {body['status']}")


@pytest.mark.parametrize("data, encoding", [
    ("héllo wörld".encode(), "utf-8"),
    ("\ufeffhello".encode("utf-8"), "utf-8-sig"),
    ("hello ünïcode".encode("utf-16"), "utf-16"),
    ("café".encode("latin-1"), "latin-1"),
])
def test_upload_accepts_text_in_common_encodings(client, data, encoding):
    response = post_upload(client, "notes.txt", data)
    assert response.status_code == 202
    body = response.get_json()
    assert body["encoding"] == encoding and body["file_name"] == "notes.txt"
    assert wait_for_job(client, body["job_id"])["status"] == "done"


def test_upload_rejects_disallowed_extension(client):
    response = post_upload(client, "evil.exe", b"MZ")
    assert response.status_code == 400 and response.get_json()["message"].startswith("Unsupported file type.")


def test_upload_rejects_binary_disguised_as_text(client):
    response = post_upload(client, "photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert response.status_code == 415 and response.get_json()["message"] == "The file looks binary, not text."


@pytest.mark.parametrize("data", [b"\xef\xbb\xbfok \xff\xfe\xfd", bytes(range(0x80, 0xa0)) * 20],
                         ids=["broken-utf8-after-bom", "c1-controls"])
def test_upload_rejects_undecodable_bytes(client, data):
    response = post_upload(client, "notes.txt", data)
    assert response.status_code == 415 and "not" in response.get_json()["message"]


def test_upload_rejects_whitespace_only_file(client):
    response = post_upload(client, "blank.txt", b"  \n\n\t ")
    assert response.status_code == 400 and response.get_json()["message"] == "The file contains only whitespace."


def test_upload_rejects_oversized_file(make_app):
    client = make_app(MAX_FILE_SIZE_MB=0.01).test_client()
    response = post_upload(client, "big.txt", b"a" * 20_000)
    assert response.status_code == 413 and "0.01 MB" in response.get_json()["message"]


def test_upload_rejects_request_far_over_limit(make_app):
    client = make_app(MAX_FILE_SIZE_MB=0.01).test_client()
    response = post_upload(client, "big.txt", b"a" * 200_000)
    assert response.status_code == 413 and "message" in response.get_json()


@pytest.mark.parametrize("form, message", [({}, "No file part in the request."),
                                           ({"file": (io.BytesIO(b"x"), "")}, "No file selected.")])
def test_upload_requires_a_file(client, form, message):
    response = client.post("/upload_file", data=form, content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["message"] == message


@pytest.mark.parametrize("name, stored", [("../../etc/passwd.txt", "etc_passwd.txt"),
                                          ("..\\..\\windows\\win.txt", "windowswin.txt"),
                                          ("/abs/path.md", "abs_path.md")])
def test_upload_path_traversal_name_is_neutralised(client, app, name, stored):
    response = post_upload(client, name, b"root")
    assert response.status_code == 202 and response.get_json()["file_name"] == stored
    wait_for_job(client, response.get_json()["job_id"])
    instance = app.config["CHAT"].INSTANCE_PATH
    assert not (instance.parent / "etc_passwd.txt").exists() and not list(instance.rglob("*passwd*"))


def test_upload_only_dots_is_no_file(client):
    response = post_upload(client, "../..", b"x")
    assert response.status_code == 400 and response.get_json()["message"] == "No file selected."


def test_upload_empty_file_is_400(client):
    response = post_upload(client, "empty.txt", b"")
    assert response.status_code == 400 and response.get_json()["message"] == "The file is empty."


def test_upload_without_endpoint_stores_chunks_and_says_so(client, app):
    response = post_upload(client, "guide.md", b"# Guide\n\nThe launch code is pineapple.\n")
    body = wait_for_job(client, response.get_json()["job_id"])
    assert body["status"] == "done" and body["message"] == "File was uploaded and analyzed successfully."
    assert "not analysed" in body["analysis"] and body["chunks"] == 1 and body["model_calls"] == 0
    conversation = client.get(f"/load_conversation/{body['conversation_id']}").get_json()
    roles = [(m["role"], m["agent"]) for m in conversation["conversation"]]
    assert roles == [("user", "file"), ("assistant", "file")]
    assert list((app.config["CHAT"].INSTANCE_PATH / "uploads").iterdir()) == []  # deleted once processed


def test_upload_is_analysed_through_the_endpoint(make_app, fake_llm):
    client = make_app(OPENAI_BASE_URL=fake_llm.url).test_client()
    client.get("/")
    response = post_upload(client, "notes.txt", b"Meeting notes: ship on Friday.")
    assert response.status_code == 202 and response.get_json()["status"] == "pending"
    body = wait_for_job(client, response.get_json()["job_id"])
    assert body["analysis"] == fake_llm.reply and body["model_calls"] == 1
    again = wait_for_job(client, post_upload(client, "copy.txt", b"Meeting notes: ship on Friday.").get_json()["job_id"])
    assert again["model_calls"] == 0 and again["cached_calls"] == 1 and len(fake_llm.requests) == 1


def test_upload_into_an_existing_conversation(client, conversation_id, other_client):
    body = wait_for_job(client, post_upload(client, "a.txt", b"hello", conversation_id=conversation_id)
                        .get_json()["job_id"])
    assert body["conversation_id"] == conversation_id
    assert post_upload(other_client, "a.txt", b"hello", conversation_id=conversation_id).status_code == 404


def test_upload_job_error_is_reported(make_app, fake_llm):
    client = make_app(OPENAI_BASE_URL=fake_llm.url).test_client()
    fake_llm.fail_next(*[Fault.http(400, message="model not found")] * 3)
    body = wait_for_job(client, post_upload(client, "a.txt", b"hello").get_json()["job_id"])
    assert body["status"] == "error" and "model not found" in body["message"]


def test_jobs_are_private_and_unknown_ids_404(client, other_client):
    job_id = post_upload(client, "a.txt", b"hello").get_json()["job_id"]
    assert other_client.get(f"/jobs/{job_id}").status_code == 404
    assert client.get("/jobs/nope").get_json() == {"message": "Job not found."}


# -- quotas ----------------------------------------------------------------------------------------

def test_upload_quota_per_user_counts_what_is_stored(make_app):
    app = make_app(UPLOAD_QUOTA_MB=0.001)  # 1,048 bytes
    browser, other = app.test_client(), app.test_client()
    first = post_upload(browser, "a.txt", b"a" * 700)
    assert first.status_code == 202 and wait_for_job(browser, first.get_json()["job_id"])["status"] == "done"
    refused = post_upload(browser, "b.txt", b"b" * 700)
    assert refused.status_code == 413
    assert "of your 0.001 MB" in refused.get_json()["message"]
    assert post_upload(other, "c.txt", b"c" * 700).status_code == 202  # another user has their own quota
    browser.delete(f"/conversations/{first.get_json()['conversation_id']}")
    assert post_upload(browser, "b.txt", b"b" * 700).status_code == 202  # deleting frees the room


def test_upload_total_cap_counts_everyone_and_uploads_waiting_for_their_job(make_app):
    from web import quotas
    app = make_app(UPLOAD_TOTAL_MB=0.002)  # 2,097 bytes for the whole server
    first, second = app.test_client(), app.test_client()
    done = post_upload(first, "a.txt", b"a" * 900)
    wait_for_job(first, done.get_json()["job_id"])
    with app.app_context():  # an upload accepted elsewhere whose job has not stored it yet
        config, store = app.config["CHAT"], app.extensions["chat_store"].get()
        release = quotas.hold_upload(store, "someone-else", 900, config)
    refused = post_upload(second, "b.txt", b"b" * 400)
    assert refused.status_code == 413 and "storage is full" in refused.get_json()["message"]
    release()
    assert post_upload(second, "b.txt", b"b" * 400).status_code == 202
