"""PDF uploads: text read page by page in the worker, chunks that keep their pages, answers that cite
them ([report.pdf, p. 3]), and a clear message for a scan. The PDFs are written by fpdf2 here."""
import functools
import re

import documents_corpus as corpus
import pytest
from test_abuse_quotas import client_user
from test_agents_socket import _connect, _say
from test_socket_events import payloads
from test_uploads import post_upload, wait_for_job

from documents.extract import extract
from documents.limits import Limits, Refused
from documents.sections import Section, chunk_sections, label

PAGES = 50


@functools.cache
def report() -> bytes:
    return corpus.report_pdf(PAGES)


def _read(tmp_path, data: bytes, name: str = "report.pdf", **limits):
    path = tmp_path / "saved.upload"
    path.write_bytes(data)
    return extract(path, "pdf", name, Limits(**limits))


def test_pdf_is_read_page_by_page(tmp_path):
    extracted = _read(tmp_path, report())
    assert extracted.pages == PAGES and extracted.pages_without_text == 0
    assert [s.page for s in extracted.sections] == list(range(1, PAGES + 1))
    for section in extracted.sections:  # each page's own fact, and no other page's
        assert re.findall(r"quokka\d+", section.text) == [corpus.codeword(section.page)]
        assert f"Page {section.page} of {PAGES}" in section.text
    assert "Unit 5" in extracted.sections[4].text  # the table on page 5


def test_pdf_chunks_are_cut_at_page_ends_and_labelled_with_their_pages(tmp_path):
    sections = _read(tmp_path, report()).sections
    located = chunk_sections(sections, chunk_tokens=1000, overlap_tokens=100)
    assert 10 < len(located) < PAGES
    covered = []
    for chunk, meta in located:
        first, last = meta["pages"]
        covered.extend(range(first, last + 1))
        own = {int(n) for n in re.findall(r"quokka(\d+)", chunk.text)}
        assert set(range(first, last + 1)) <= own <= set(range(first - 1, last + 1))  # overlap: the page before
    assert covered == list(range(1, PAGES + 1))  # every page once: chunks end where pages end


def test_chunk_labels_read_like_citations():
    assert label({"pages": [3, 3]}) == "p. 3" and label({"pages": [3, 4]}) == "pp. 3–4"
    assert label({"headings": ["Methods", "Results"]}) == "§ Methods; § Results"
    assert label({"headings": ["A", "B", "F"], "skipped": 3}) == "§ A; § B; … § F"
    assert label(None) is None and label({}) is None


def test_a_text_file_keeps_chunks_without_a_location():
    located = chunk_sections([Section("Plain words. " * 400)], chunk_tokens=200, overlap_tokens=20)
    assert len(located) > 1 and {meta for _, meta in located} == {None}


def test_pdf_upload_stores_pages_and_cites_them_in_the_analysis(make_app, fake_llm):
    def responder(body):  # map calls echo their location; the combining call keeps every note
        system, text = body["messages"][0]["content"], body["messages"][1]["content"]
        where = re.search(r"as it is written here: (\[[^\]]+\])", system)
        return f"note {where.group(1)}" if where else "Summary: " + " ".join(re.findall(r"\[p+\. [^\]]+\]", text))

    fake_llm.responder = responder
    app = make_app(OPENAI_BASE_URL=fake_llm.url)
    client = app.test_client()
    response = post_upload(client, "report.pdf", report())
    assert response.status_code == 202
    accepted = response.get_json()
    assert accepted["encoding"] == "pdf" and accepted["characters"] is None and accepted["file_name"] == "report.pdf"
    body = wait_for_job(client, accepted["job_id"], seconds=60)
    assert body["status"] == "done", body
    assert body["pages"] == PAGES and body["pages_without_text"] == 0 and body["characters"] > 20_000
    assert "[report.pdf, pp. 1–2]" in body["analysis"] and "[report.pdf, pp. 49–50]" in body["analysis"]
    assert any("This part is pp. 3–4 of the document" in r.body["messages"][0]["content"] for r in fake_llm.requests)
    with app.app_context():
        chunks = app.extensions["chat_store"].get().document_chunks(client_user(client), body["document_id"])
    assert [c["meta"]["pages"] for c in chunks][:3] == [[1, 2], [3, 4], [5, 6]]
    conversation = client.get(f"/load_conversation/{body['conversation_id']}").get_json()["conversation"]
    assert re.fullmatch(rf"Uploaded report\.pdf \([\d.]+ KB, {PAGES} pages, \d+ chunks\)", conversation[0]["content"])


def test_knowledge_quotes_a_pdf_page_with_its_number(make_app):
    browser, sock = _connect(make_app())
    try:
        assert wait_for_job(browser, post_upload(browser, "report.pdf", report()).get_json()["job_id"],
                            seconds=60)["status"] == "done"
        _, events = _say(sock, f"/ask what is {corpus.codeword(17)}?")
        reply = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
        assert corpus.codeword(17) in reply and "— report.pdf, pp. 17–18" in reply
        citation = payloads(events, "response_done")[0]["meta"]["citations"][0]
        assert citation["file_name"] == "report.pdf" and citation["pages"] == [17, 18]
        assert citation["location"] == "pp. 17–18"
    finally:
        sock.disconnect()


def test_knowledge_prompt_heads_pdf_excerpts_with_their_pages(make_app, fake_llm):
    browser, sock = _connect(make_app(OPENAI_BASE_URL=fake_llm.url, MAX_TOKENS=8192, REPLY_TOKENS=256))
    try:
        wait_for_job(browser, post_upload(browser, "report.pdf", report()).get_json()["job_id"], seconds=60)
        before = len(fake_llm.requests)
        _, events = _say(sock, f"/ask what is {corpus.codeword(33)}?")
        system = fake_llm.requests[before].body["messages"][0]["content"]
        assert "[report.pdf, pp. 33–34]\n" in system and "[report.pdf, p. 3]" in system  # the example
        reply = "".join(c["chunk"] for c in payloads(events, "response_chunk"))
        assert "report.pdf (pp. 33–34)" in reply.rsplit("Sources: ", 1)[1]
    finally:
        sock.disconnect()


def test_scanned_pdf_gets_a_clear_message_not_an_empty_analysis(client):
    body = wait_for_job(client, post_upload(client, "scan.pdf", corpus.scanned_pdf()).get_json()["job_id"])
    assert body["status"] == "error"
    assert body["message"].startswith("scan.pdf has no text layer") and "OCR" in body["message"]


def test_pdf_with_some_scanned_pages_is_read_and_says_how_many(client):
    body = wait_for_job(client, post_upload(client, "mixed.pdf", corpus.half_scanned_pdf()).get_json()["job_id"])
    assert body["status"] == "done" and body["pages"] == 2 and body["pages_without_text"] == 1


def test_pdf_locked_for_editing_only_is_read(tmp_path):
    """An empty user password only restricts permissions: such files are common and readable."""
    extracted = _read(tmp_path, corpus.encrypted_pdf(user_password=""))
    assert extracted.pages == 2 and corpus.codeword(1) in extracted.sections[0].text


def test_pdf_with_more_text_than_allowed_is_refused(tmp_path):
    with pytest.raises(Refused, match=r"report\.pdf holds more than 0\.01 MB of text"):
        _read(tmp_path, report(), max_text_bytes=10_000)


def test_store_keeps_each_chunks_location(store):
    document = store.add_document("alice", "report.pdf", "h", ["page one words", "page two words"], [3, 3],
                                  chunk_meta=[{"pages": [1, 1]}, None])
    chunks = store.document_chunks("alice", document["document_id"])
    assert chunks[0]["meta"] == {"pages": [1, 1]} and "meta" not in chunks[1]  # none stored, none shown
    with pytest.raises(ValueError):
        store.add_document("alice", "bad.pdf", "h2", ["one"], [1], chunk_meta=[None, None])


def test_search_returns_each_chunks_location(search_store):
    search_store.add_document("alice", "report.docx", "h", ["wombat facts", "other words"], [2, 2],
                              chunk_meta=[{"headings": ["Marsupials"]}, {"headings": ["Other"]}])
    assert [hit["meta"] for hit in search_store.search_chunks("alice", "wombat")] == [{"headings": ["Marsupials"]}]
