"""An upload's background job: pending -> processing -> done | error.

The route has already validated the file and saved it under a random name outside static/ (a
text file decoded, as UTF-8; a PDF or DOCX as it came), and holds the user's upload quota and a
slot of their model work (web/quotas.py, web/generations.py). The job reads a document's text in
a bounded worker process (documents/extract.py: a file it refuses ends the job with the reason),
keeps its chunks, labelled with their pages or headings, for the knowledge agent (then gives the
quota hold back: the bytes are stored), analyses it, stores the exchange in the conversation, and
deletes the saved file and gives everything back, whatever happens.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import utils
from agents import offload
from agents.file_agent import FileAnalyser, cite
from agents.llm_client import LLMError
from documents.extract import Extracted, extract
from documents.limits import Limits, Refused
from documents.sections import Section, chunk_sections, join, label

log = logging.getLogger("chat.jobs")
ORPHAN_AGE_S = 3600
DONE_MESSAGE = "File was uploaded and analyzed successfully."
STORED_ONLY = ("Stored {name} ({chunks} chunks) so you can ask about it with /ask. No model endpoint is "
               "configured, so it was not analysed.")


@dataclass(frozen=True)
class UploadJob:
    user_id: str
    job_id: str
    conversation_id: str
    path: Path
    file_name: str
    size_bytes: int
    encoding: str  # what the upload was decoded from; the saved text is UTF-8 ("pdf", "docx": saved as is)
    release_quota: Callable[[], None] = lambda: None  # called once the document is stored
    release_slot: Callable[[], None] = lambda: None  # called when the job ends
    kind: str = "text"  # "text", "pdf" or "docx" (documents/kinds.py)


def run_upload_job(store, providers, config, job: UploadJob, notify: Callable[[str, dict], None]) -> None:
    """Never raises: every outcome ends in the job record and a `file_progress`/`file_done` event."""
    def progress(payload: dict) -> None:
        store.update_job(job.user_id, job.job_id, done=payload["done"], total=payload["total"])
        notify("file_progress", {"job_id": job.job_id, "file_name": job.file_name, **payload})

    client = providers.client("file")
    started = time.monotonic()
    try:
        store.update_job(job.user_id, job.job_id, status="processing")
        notify("file_progress", {"job_id": job.job_id, "file_name": job.file_name, "phase": "chunking",
                                 "done": 0, "total": 0})
        result = _process(store, client, config, job, progress)
        store.update_job(job.user_id, job.job_id, status="done", result=result)
        notify("file_done", {"job_id": job.job_id, "conversation_id": job.conversation_id, **result})
        log.info("File job %s done in %.1f s: %s", job.job_id, time.monotonic() - started,
                 {k: result[k] for k in ("chunks", "model_calls", "cached_calls")})
    except Exception as error:  # the job must end in a state the user can see
        told = isinstance(error, (LLMError, Refused))  # their message is for the user
        message = error.message if told else "The file could not be analysed."
        if isinstance(error, Refused):
            log.info("File job %s refused its file after %.1f s", job.job_id, time.monotonic() - started)
        elif not told:
            log.exception("File job %s failed", job.job_id)
        store.update_job(job.user_id, job.job_id, status="error", error=message)
        notify("file_error", {"job_id": job.job_id, "conversation_id": job.conversation_id, "message": message})
    finally:
        job.path.unlink(missing_ok=True)
        job.release_quota()
        job.release_slot()
        if client is not None:
            client.close()


def _process(store, client, config, job: UploadJob, progress) -> dict:
    extracted = _read(job, config)
    located = chunk_sections(extracted.sections, config.CHUNK_SIZE_TOKENS, config.CHUNK_OVERLAP_TOKENS,
                             pause=offload.pauser())
    chunks, metas = [chunk for chunk, _ in located], [meta for _, meta in located]
    document = store.add_document(job.user_id, job.file_name, _content_hash(job.kind, extracted),
                                  [c.text for c in chunks], [c.tokens for c in chunks], job.conversation_id,
                                  size_bytes=job.size_bytes, chunk_meta=metas if any(metas) else None)
    job.release_quota()  # the bytes now count in upload_bytes
    store.compact_journal()  # a big write: keep SQLite's WAL from staying large
    facts = {"document_id": document["document_id"], "file_name": job.file_name, "job_id": job.job_id,
             "size_bytes": job.size_bytes, "encoding": job.encoding, "chunks": len(chunks),
             **_document_facts(extracted)}
    line = _upload_line(job, len(chunks), extracted.pages)
    store.append_message(job.user_id, job.conversation_id, "user", line,
                         tokens=utils.message_tokens("user", line), agent="file", meta=facts)
    if client is None:
        analysis_text, stats = STORED_ONLY.format(name=job.file_name, chunks=len(chunks)), {}
    else:
        analyser = FileAnalyser(store, job.user_id, client, config, progress)
        analysis = analyser.run([c.text for c in chunks], labels=[label(meta) for meta in metas])
        analysis_text, stats = cite(analysis.text, job.file_name), analysis.public()
    store.append_message(job.user_id, job.conversation_id, "assistant", analysis_text,
                         tokens=utils.message_tokens("assistant", analysis_text), agent="file",
                         finish_reason="stop", meta={**facts, **stats})
    return {**facts, "model_calls": 0, "cached_calls": 0, **stats,
            "message": DONE_MESSAGE, "analysis": analysis_text}


def _read(job: UploadJob, config) -> Extracted:
    """A text file's saved text as one section; a PDF's pages or a DOCX's headed parts from a worker."""
    if job.kind == "text":
        return Extracted([Section(job.path.read_text(encoding="utf-8"))])
    return extract(job.path, job.kind, job.file_name, Limits.from_config(config), config.DOCUMENT_WORKERS)


def _content_hash(kind: str, extracted: Extracted) -> str:
    """A text file's hash is its text's, as before; a document's also names its kind, so the same
    words from a PDF are stored with their pages even when a .txt of them came first."""
    text, _ = join(extracted.sections)
    return hashlib.sha256((text if kind == "text" else f"{kind}\x00{text}").encode()).hexdigest()


def _document_facts(extracted: Extracted) -> dict:
    facts = {"characters": sum(len(section.text) for section in extracted.sections)}
    if extracted.pages is not None:
        facts.update(pages=extracted.pages, pages_without_text=extracted.pages_without_text)
    return facts


def _upload_line(job: UploadJob, chunks: int, pages: int | None = None) -> str:
    of_pages = f"{pages} pages, " if pages is not None else ""
    return f"Uploaded {job.file_name} ({job.size_bytes / 1024:.1f} KB, {of_pages}{chunks} chunks)"


def sweep_orphans(folder: Path, max_age_s: float = ORPHAN_AGE_S) -> int:
    """Delete saved uploads older than max_age_s (a worker died mid-job; its quota hold expires
    at the same age); returns how many. Run at start-up and at every upload."""
    if not folder.is_dir():
        return 0
    removed, cutoff = 0, time.time() - max_age_s
    for path in folder.glob("*.upload"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
