"""PDF and DOCX reading: pages per second, the time to refuse a hostile file, and a whole upload.

    .venv/bin/python benchmarks/document_bench.py [--runs 3] [--pages 50 200]

Prints, each figure the median of --runs runs (and the worst run where the worst matters):
1. extraction through the real worker process (documents.extract: start-up, pypdf, JSON back) for
   report PDFs of --pages pages and a 12-section DOCX, as pages (sections) per second, and the
   worker's start-up alone (a one-page PDF);
2. the time from the call to the refusal for a scan and each hostile case of tests/documents_corpus.py
   with the default limits (target: every one within 2 s), and the worst of them;
3. a 50-page PDF uploaded through the app (threading mode, Flask test client) and analysed through
   the fake model server: seconds from POST /upload_file to the job's `done`, with its chunk and
   page counts, and whether the analysis cites pages;
then /proc/loadavg, since the machine may be shared. Everything runs locally and stops by itself.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import documents_corpus as corpus
from fake_llm_process import start_fake_llm, stop_process

from documents.extract import extract
from documents.limits import MB, Limits, Refused

HOSTILE = {
    "scan.pdf (no text layer)": lambda: corpus.scanned_pdf(4),
    "locked.pdf (encrypted)": corpus.encrypted_pdf,
    "huge.pdf (10,001 pages)": lambda: corpus.many_pages_pdf(10_001),
    "liar.pdf (10,001 pages, /Count 1)": lambda: corpus.many_pages_pdf(10_001, declared=1),
    "deep-liar.pdf (10,000 pages in nodes of 100, /Count 1)": lambda: corpus.many_pages_pdf(
        10_000, declared=1, per_node=100),
    "bomb.pdf (content stream -> 80 MB)": lambda: corpus.content_bomb_pdf(80 * MB),
    "objects.pdf (object stream -> 80 MB)": lambda: corpus.object_stream_bomb_pdf(80 * MB),
    "bomb.docx (zip -> 80 MB, declared)": lambda: corpus.zip_bomb_docx(80 * MB),
    "liar.docx (zip -> 80 MB, declared 1 KB)": lambda: corpus.lying_zip_docx(80 * MB),
    "parts.docx (2,500 entries)": lambda: corpus.many_entries_docx(2500),
}


def timed_extract(folder: Path, data: bytes, name: str) -> tuple[float, object]:
    path = folder / "bench.upload"
    path.write_bytes(data)
    started = time.perf_counter()
    try:
        outcome = extract(path, name.rsplit(".", 1)[1], name, Limits())
    except Refused as refusal:
        outcome = refusal
    return time.perf_counter() - started, outcome


def extraction(folder: Path, runs: int, page_counts: list[int]) -> None:
    print(f"1. extraction through the worker process (median of {runs})")
    cases = [(f"report.pdf, {n} pages", "report.pdf", corpus.report_pdf(n), n) for n in [1, *page_counts]]
    cases.append(("report.docx, 12 headed sections", "report.docx", corpus.report_docx(12), None))
    for label, name, data, pages in cases:
        times = []
        for _ in range(runs):
            seconds, outcome = timed_extract(folder, data, name)
            assert not isinstance(outcome, Refused), outcome.message
            times.append(seconds)
        median, units = statistics.median(times), pages or len(outcome.sections)
        print(f"   {label:38} {len(data) / 1024:7.0f} KB  {median:6.2f} s  {units / median:7.0f} "
              f"{'pages' if pages else 'sections'}/s")


def refusals(folder: Path, runs: int) -> None:
    print(f"2. refusals with the default limits (median of {runs}, worst run)")
    worst = 0.0
    for label, make in HOSTILE.items():
        data, name = make(), label.split(" ", 1)[0]
        times, message = [], ""
        for _ in range(runs):
            seconds, outcome = timed_extract(folder, data, name)
            assert isinstance(outcome, Refused), f"{label} was not refused"
            times.append(seconds)
            message = outcome.message
        worst = max(worst, max(times))
        print(f"   {label:52} {len(data) / 1024:7.0f} KB  {statistics.median(times):5.2f} s "
              f"(worst {max(times):4.2f} s)  {message[:60]}…")
    print(f"   worst refusal: {worst:.2f} s (target: within 2 s)")


def upload(folder: Path, runs: int) -> None:
    from app import create_app
    from config import TestConfig
    print(f"3. a 50-page PDF uploaded and analysed through the app and the fake model (median of {runs})")
    data = corpus.report_pdf(50)
    url, fake = start_fake_llm(reply="Notes [p. 3].")
    try:
        times, body = [], {}
        for run in range(runs):  # a fresh instance each time: the model cache would answer a second upload
            client = create_app(TestConfig(folder / f"instance{run}", OPENAI_BASE_URL=url)).test_client()
            started = time.perf_counter()
            response = client.post("/upload_file", data={"file": (io.BytesIO(data), "report.pdf")},
                                   content_type="multipart/form-data")
            body = _wait(client, response.get_json()["job_id"])
            times.append(time.perf_counter() - started)
        print(f"   {statistics.median(times):.2f} s to done: {body['pages']} pages, {body['chunks']} chunks, "
              f"{body['model_calls']} model calls, cites pages: {'[report.pdf, p. 3]' in body['analysis']}")
    finally:
        stop_process(fake)


def _wait(client, job_id: str, seconds: float = 300) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = client.get(f"/jobs/{job_id}").get_json()
        if body["status"] in ("done", "error"):
            assert body["status"] == "done", body
            return body
        time.sleep(0.05)
    raise TimeoutError(job_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", type=int, nargs="+", default=[50, 200])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        extraction(Path(folder), args.runs, args.pages)
        refusals(Path(folder), args.runs)
        upload(Path(folder), args.runs)
    print("load average:", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
