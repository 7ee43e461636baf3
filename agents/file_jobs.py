"""An upload's background job: pending -> processing -> done | error.

The route has already validated and decoded the file and saved its text (UTF-8) under a random
name outside static/, and holds the user's upload quota and a slot of their model work (web/quotas.py,
web/generations.py); the job keeps its chunks for the knowledge agent (then gives the quota hold
back: the bytes are stored), analyses it, stores the exchange in the conversation, and deletes the
saved file and gives everything back, whatever happens.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import utils
from agents.file_agent import FileAnalyser, split
from agents.llm_client import LLMError

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
    encoding: str  # what the upload was decoded from; the saved text is UTF-8
    release_quota: Callable[[], None] = lambda: None  # called once the document is stored
    release_slot: Callable[[], None] = lambda: None  # called when the job ends


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
        message = error.message if isinstance(error, LLMError) else "The file could not be analysed."
        if not isinstance(error, LLMError):
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
    text = job.path.read_text(encoding="utf-8")
    chunks = split(text, config)
    document = store.add_document(job.user_id, job.file_name, hashlib.sha256(text.encode()).hexdigest(),
                                  [c.text for c in chunks], [c.tokens for c in chunks], job.conversation_id,
                                  size_bytes=job.size_bytes)
    job.release_quota()  # the bytes now count in upload_bytes
    store.compact_journal()  # a big write: keep SQLite's WAL from staying large
    facts = {"document_id": document["document_id"], "file_name": job.file_name, "job_id": job.job_id,
             "size_bytes": job.size_bytes, "encoding": job.encoding, "chunks": len(chunks)}
    line = _upload_line(job, len(chunks))
    store.append_message(job.user_id, job.conversation_id, "user", line,
                         tokens=utils.message_tokens("user", line), agent="file", meta=facts)
    if client is None:
        analysis_text, stats = STORED_ONLY.format(name=job.file_name, chunks=len(chunks)), {}
    else:
        analyser = FileAnalyser(store, job.user_id, client, config, progress)
        analysis = analyser.run([c.text for c in chunks])
        analysis_text, stats = analysis.text, analysis.public()
    store.append_message(job.user_id, job.conversation_id, "assistant", analysis_text,
                         tokens=utils.message_tokens("assistant", analysis_text), agent="file",
                         finish_reason="stop", meta={**facts, **stats})
    return {**facts, "model_calls": 0, "cached_calls": 0, **stats,
            "message": DONE_MESSAGE, "analysis": analysis_text}


def _upload_line(job: UploadJob, chunks: int) -> str:
    return f"Uploaded {job.file_name} ({job.size_bytes / 1024:.1f} KB, {chunks} chunks)"


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
