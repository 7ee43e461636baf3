"""DOCX uploads: text read heading by heading (paragraphs, lists and tables in document order), chunks
that keep their headings, and answers that cite them ([report.docx, § Methods]). The files are
written by python-docx here."""
import functools
import re

import documents_corpus as corpus
from test_agents_socket import _connect, _say
from test_socket_events import payloads
from test_uploads import post_upload, wait_for_job

from documents.extract import extract
from documents.limits import Limits
from documents.sections import chunk_sections

SECTIONS = 12


@functools.cache
def report() -> bytes:
    return corpus.report_docx(SECTIONS)


def _read(tmp_path, data: bytes, name: str = "report.docx"):
    path = tmp_path / "saved.upload"
    path.write_bytes(data)
    return extract(path, "docx", name, Limits())


def test_docx_is_read_heading_by_heading_in_document_order(tmp_path):
    extracted = _read(tmp_path, report())
    headings = [s.heading for s in extracted.sections]
    assert headings[0] == "Annual operations report"  # the Title style counts as a heading
    assert headings[1:4] == ["Staffing in part 1", "Logistics in part 2", "Safety in part 3"]
    assert "Details of part 3" in headings and extracted.pages is None
    by_heading = {s.heading: s.text for s in extracted.sections}
    assert by_heading["Staffing in part 1"].startswith("Staffing in part 1\n\n")  # the heading is in its text
    assert corpus.fact(1) in by_heading["Staffing in part 1"]
    assert "first delivery for part 3\n\nsecond delivery for part 3" in by_heading["Details of part 3"]
    assert "Item | Plan | Actual\nUnit 4 | 40 | 44" in by_heading["Outlook in part 4"]  # a table, row by row


def test_docx_chunks_are_labelled_with_the_headings_they_cover(tmp_path):
    located = chunk_sections(_read(tmp_path, report()).sections, chunk_tokens=300, overlap_tokens=30)
    assert len(located) > 3
    for chunk, meta in located:
        for n in map(int, re.findall(r"quokka(\d+)", chunk.text)):
            assert any(f"part {n}" in heading for heading in meta["headings"]) or chunk.text.find(
                corpus.codeword(n)) < chunk.text.find(meta["headings"][0])  # else it is in the overlap


def test_docx_upload_is_stored_with_headings_and_quoted_with_them(make_app):
    browser, sock = _connect(make_app())
    try:
        response = post_upload(browser, "report.docx", report())
        assert response.status_code == 202 and response.get_json()["encoding"] == "docx"
        body = wait_for_job(browser, response.get_json()["job_id"], seconds=60)
        assert body["status"] == "done" and body["characters"] > 3000 and "pages" not in body
        _, events = _say(sock, f"/ask which part has {corpus.codeword(7)}?")
        reply = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
        assert corpus.codeword(7) in reply
        assert "— report.docx, § Annual operations report; § Staffing in part 1; … § Customers in part 7" in reply
        citation = next(c for c in payloads(events, "response_done")[0]["meta"]["citations"] if c["chunk"] == 1)
        assert citation["headings"][-1] == "Customers in part 7" and citation["skipped"] > 0
    finally:
        sock.disconnect()


def test_file_command_on_a_docx_cites_its_headings(make_app, fake_llm):
    def responder(body):  # map calls echo their location; the combining call keeps every note
        system, text = body["messages"][0]["content"], body["messages"][1]["content"]
        where = re.search(r"as it is written here: (\[[^\]]+\])", system)
        return f"note {where.group(1)}" if where else "Summary: " + " ".join(re.findall(r"\[§ [^\]]+\]", text))

    browser, sock = _connect(make_app(OPENAI_BASE_URL=fake_llm.url, CHUNK_SIZE_TOKENS=300, CHUNK_OVERLAP_TOKENS=30))
    try:
        wait_for_job(browser, post_upload(browser, "report.docx", report()).get_json()["job_id"], seconds=60)
        fake_llm.responder = responder
        _, events = _say(sock, "/file list the inspection codewords")
        reply = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
        assert "[report.docx, § Annual operations report; § Staffing in part 1]" in reply
        assert "[report.docx, § Outlook in part 12" in reply
    finally:
        sock.disconnect()


def test_docx_without_text_is_refused_clearly(client):
    import io

    import docx
    empty = io.BytesIO()
    docx.Document().save(empty)
    body = wait_for_job(client, post_upload(client, "blank.docx", empty.getvalue()).get_json()["job_id"])
    assert body["status"] == "error" and body["message"] == "blank.docx contains no text to analyse."
