"""`/upload_file` validation: type, size, binary sniffing, encodings."""
import io

import pytest


def _upload(client, name, data):
    return client.post("/upload_file", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


@pytest.mark.parametrize("data, encoding", [
    ("héllo wörld".encode("utf-8"), "utf-8"),
    ("\ufeffhello".encode("utf-8"), "utf-8-sig"),
    ("hello ünïcode".encode("utf-16"), "utf-16"),
    ("café".encode("latin-1"), "latin-1"),
])
def test_upload_accepts_text_in_common_encodings(client, data, encoding):
    response = _upload(client, "notes.txt", data)
    assert response.status_code == 200
    body = response.get_json()
    assert body["encoding"] == encoding and body["file_name"] == "notes.txt"


def test_upload_rejects_disallowed_extension(client):
    response = _upload(client, "evil.exe", b"MZ")
    assert response.status_code == 400 and response.get_json()["message"].startswith("Unsupported file type.")


def test_upload_rejects_binary_disguised_as_text(client):
    response = _upload(client, "photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert response.status_code == 415


def test_upload_rejects_oversized_file(make_app):
    client = make_app(MAX_FILE_SIZE_MB=0.01).test_client()
    response = _upload(client, "big.txt", b"a" * 20_000)
    assert response.status_code == 413 and "0.01 MB" in response.get_json()["message"]


def test_upload_rejects_request_far_over_limit(make_app):
    client = make_app(MAX_FILE_SIZE_MB=0.01).test_client()
    response = _upload(client, "big.txt", b"a" * 200_000)
    assert response.status_code == 413 and "message" in response.get_json()


@pytest.mark.parametrize("form, message", [({}, "No file part in the request."),
                                           ({"file": (io.BytesIO(b"x"), "")}, "No file selected.")])
def test_upload_requires_a_file(client, form, message):
    response = client.post("/upload_file", data=form, content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["message"] == message


def test_upload_path_traversal_name_is_neutralised(client):
    response = _upload(client, "../../etc/passwd.txt", b"root")
    assert response.status_code == 200 and response.get_json()["file_name"] == "etc_passwd.txt"


def test_upload_empty_file_is_400(client):
    assert _upload(client, "empty.txt", b"").status_code == 400
