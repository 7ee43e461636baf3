"""`python -m documents.worker`: read one document under limits, answer with its text as JSON.

Started once per document by documents/extract.py, which sends {"path", "kind", "name", "limits"}
on stdin and kills it if it outlives the deadline. Once its reader is imported, the worker caps itself (address space
DOCUMENT_MEMORY_MB, no child processes, CPU time a little past DOCUMENT_TIMEOUT_S) so even a
file that defeats every check cannot take the machine with it; then it answers with one JSON
object: {"ok": true, "sections": [...], ...} or {"ok": false, "message": "..."}.
"""
from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable
from pathlib import Path

from documents.limits import Limits, Refused

MAX_REQUEST_BYTES = 64 * 1024
CPU_SLACK_S = 2
OUT_OF_MEMORY = "Reading {name} needed more memory than allowed, so it was stopped."
FAILED = "{name} could not be read."


def limit_self(limits: Limits) -> None:
    """Lower the soft limits (never above the hard ones, which an unprivileged process cannot raise)."""
    cpu = int(limits.timeout_s + CPU_SLACK_S) + 1
    for kind, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_NPROC, 0),
                        (resource.RLIMIT_CPU, cpu)):
        _, hard = resource.getrlimit(kind)
        resource.setrlimit(kind, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))


def reader(kind: str) -> Callable[[bytes, str, Limits], dict]:
    """The reader for `kind`, imported only now (a PDF worker never loads python-docx, nor the
    reverse) and before the limits: they are for what the file makes the worker do."""
    if kind == "pdf":
        from documents.pdf_text import read_pdf
        return read_pdf
    if kind == "docx":
        from documents.docx_text import read_docx
        return read_docx
    raise ValueError(f"unknown kind {kind!r}")


def answer(request: dict) -> dict:
    name = str(request.get("name", "The file"))
    try:
        limits, read = Limits.from_dict(request["limits"]), reader(str(request["kind"]))
        data = Path(request["path"]).read_bytes()
        limit_self(limits)
        return {"ok": True, **read(data, name, limits)}
    except Refused as refusal:
        return {"ok": False, "message": refusal.message}
    except MemoryError:
        return {"ok": False, "message": OUT_OF_MEMORY.format(name=name)}
    except Exception as error:  # noqa: BLE001 - the parent logs the kind of failure, never the file's content
        return {"ok": False, "message": FAILED.format(name=name), "error": type(error).__name__}


def main() -> None:
    try:
        request = json.loads(sys.stdin.buffer.read(MAX_REQUEST_BYTES))
    except ValueError:
        request = {}
    reply = answer(request if isinstance(request, dict) else {})
    sys.stdout.buffer.write(json.dumps(reply, ensure_ascii=False).encode("utf-8", "replace"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
