"""A streamed response body read at most every `interval` seconds, all that has arrived at once.

A model server writes one small HTTP chunk per token. Read as it arrives, every token costs a
wake-up of the reading green thread, and with hundreds of replies streaming that wake-up is most
of the server's CPU (measured under eventlet: ~70 µs a token read per chunk, ~40 µs read every
50 ms). The page is sent text at most every STREAM_FLUSH_MS anyway, so reading the socket that
often delays nothing the user sees. Reads are immediate until the caller has its first event
(`start_pacing`): time to first token is unchanged, even when the first event spans two reads.

Reads go to the response's buffered socket file (`read1`: what is buffered, or one socket read),
and HTTP/1.1 chunked framing is undone here. Where that file cannot be reached or the body is
framed otherwise (compressed, Content-Length), `paced_body` returns None and the caller reads as
before. A chunked body read to its clean end (the last chunk and its blank line, nothing after)
hands the connection back to the pool for the next request (`_hand_back`); one left earlier
(Stop, an error) or ending otherwise is closed, since http.client never saw that body end.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import requests

READ_SIZE = 64 * 1024
MAX_SIZE_LINE = 1024
HEX_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def paced_body(response: requests.Response, interval: float | Callable[[], float],
               sleep: Callable[[float], object], clock: Callable[[], float] = time.monotonic) -> PacedBody | None:
    """The body's bytes, read at most every `interval` s once pacing started; None when this
    response cannot be paced. `interval` may be a function: the page's flush interval, which grows
    while the event loop lags (web/flush_pacer.py), so a loaded worker reads less often too."""
    raw = response.raw
    http_response = getattr(raw, "_fp", None)
    socket_file = getattr(http_response, "fp", None)
    if _seconds(interval) <= 0 or not hasattr(socket_file, "read1"):
        return None
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return None
    pacer = _Pacer(interval, sleep, clock)
    if getattr(raw, "chunked", False):
        if getattr(http_response, "chunk_left", "?") is not None:  # http.client already began reading
            return None
        return PacedBody(_dechunked(_paced_reads(socket_file, pacer), lambda: _hand_back(response)), pacer)
    if response.headers.get("content-length") is None:  # ends when the server closes the connection
        return PacedBody(_paced_reads(socket_file, pacer), pacer)
    return None


class _Pacer:
    """Waits before each read until `interval` has passed since the one before, once pacing started."""

    def __init__(self, interval: float | Callable[[], float], sleep, clock) -> None:
        self.interval, self.sleep, self.clock = interval, sleep, clock
        self.pacing, self.last = False, 0.0

    def before_read(self) -> None:
        if self.pacing:
            wait = _seconds(self.interval) - (self.clock() - self.last)
            if wait > 0:
                self.sleep(wait)
        self.last = self.clock()


def _seconds(interval: float | Callable[[], float]) -> float:
    return interval() if callable(interval) else interval


class PacedBody:
    """The body's bytes; reads are immediate until the caller calls start_pacing (its first event)."""

    def __init__(self, pieces: Iterator[bytes], pacer: _Pacer) -> None:
        self._pieces, self._pacer = pieces, pacer

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces

    def start_pacing(self) -> None:
        self._pacer.pacing = True


def _paced_reads(socket_file, pacer: _Pacer) -> Iterator[bytes]:
    while True:
        pacer.before_read()
        data = socket_file.read1(READ_SIZE)
        if not data:
            return
        yield data


def _dechunked(reads: Iterator[bytes], at_clean_end: Callable[[], None] = lambda: None) -> Iterator[bytes]:
    """HTTP/1.1 chunked transfer coding undone; one piece of body per read (several chunks joined).
    `at_clean_end` runs when the last chunk and its blank line were read with nothing after them."""
    buffer = b""
    for data in reads:
        buffer += data
        body, buffer, finished = _take_chunks(buffer)
        if finished and buffer == b"\r\n":
            at_clean_end()
        if body:
            yield body
        if finished:
            return
    raise requests.exceptions.ChunkedEncodingError("The response ended in the middle of a chunk.")


def _take_chunks(buffer: bytes) -> tuple[bytes, bytes, bool]:
    """(the complete chunks' data, the unread rest, whether the last chunk was seen)."""
    pieces = []
    while True:
        line_end = buffer.find(b"\r\n")
        if line_end < 0:
            if len(buffer) > MAX_SIZE_LINE:
                raise requests.exceptions.ChunkedEncodingError("A chunk size line is too long.")
            return b"".join(pieces), buffer, False
        size = _chunk_size(buffer[:line_end])
        if size == 0:  # the last chunk; what follows (trailers, its blank line) is returned as the rest
            return b"".join(pieces), buffer[line_end + 2:], True
        start = line_end + 2
        if len(buffer) < start + size + 2:
            return b"".join(pieces), buffer, False
        if buffer[start + size:start + size + 2] != b"\r\n":
            raise requests.exceptions.ChunkedEncodingError("A chunk does not end where its size says.")
        pieces.append(buffer[start:start + size])
        buffer = buffer[start + size + 2:]


def _hand_back(response: requests.Response) -> None:
    """The whole body was read here, behind http.client's back: tell it the body ended, and give
    urllib3's connection back to its pool (kept alive for the next request, unless the server
    said it will close it). Best effort: if either library refuses, the connection is closed."""
    try:
        response.raw._fp._close_conn()
        response.raw.release_conn()
    except Exception:  # noqa: BLE001 - a private detail changed: fall back to closing, as before
        response.close()


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
    if not HEX_SIZE.fullmatch(text):
        raise requests.exceptions.ChunkedEncodingError(f"Bad chunk size {text[:20]!r}.")
    return int(text, 16)
