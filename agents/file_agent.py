"""File analysis: chunk a text file, analyse the chunks concurrently, reduce the analyses.

Map: every chunk is analysed by a bounded pool (FILE_WORKERS) with retries. Reduce: the
chunk analyses are combined with utils.summarise_recursive, recursively when they do not fit
one call. Each model call is cached by a hash of its exact input (per user), so the same file
again, under any name, costs no model calls. Prompts never contain the file name for that
reason. Tokenising yields to the event loop between lines (agents/offload.py).
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

import chunking
import utils
from agents import offload
from agents.llm_client import LLMError, LLMStreamError, LLMUnavailable
from agents.turn_types import Reply, Turn

log = logging.getLogger("chat.agent.file")
PROMPT_VERSION = "1"
DEFAULT_INSTRUCTION = ("Analyse this file: what it is about, its main points, notable details (names, "
                       "numbers, dates) and any problems or open questions.")
MAP_PROMPT = ("You are reading part {part} of {parts} of a longer text file. Task for the whole file: "
              "{instruction}\nReport what this part contributes to that task, concisely, as notes for "
              "a later step that combines all parts.")
SINGLE_PROMPT = "{instruction}\nThe file's text follows."
REDUCE_PROMPT = ("Combine these notes on consecutive parts of one file into one answer to the task: "
                 "{instruction}\nWrite for the user, in Markdown, without mentioning the parts.")
NO_FILE = "You have no uploaded files yet. Upload a text file, then ask about it with /file."
RETRYABLE = (LLMUnavailable, LLMStreamError)


class Stopped(Exception):
    """The user stopped the analysis."""


@dataclass
class Analysis:
    text: str
    chunks: int
    model_calls: int = 0
    cached_calls: int = 0
    errors: list[str] = field(default_factory=list)

    def public(self) -> dict:
        return {"chunks": self.chunks, "model_calls": self.model_calls, "cached_calls": self.cached_calls}


def split(text: str, config) -> list[chunking.Chunk]:
    """Chunk in slices that yield to the event loop: tokenising megabytes must not hold it up."""
    return chunking.chunk_text(text, config.CHUNK_SIZE_TOKENS, config.CHUNK_OVERLAP_TOKENS,
                               pause=offload.pauser())


class FileAnalyser:
    """One analysis run: the model client, the cache, progress reports and the stop flag."""

    def __init__(self, store, user_id: str, client, config, progress: Callable[[dict], None],
                 stopped: Callable[[], bool] = lambda: False, sleep: Callable[[float], object] | None = None):
        self.store, self.user_id, self.client, self.config = store, user_id, client, config
        self.progress, self.stopped = progress, stopped
        self.analysis = Analysis("", 0)
        self._lock = threading.Lock()  # pool workers update the counters
        self._retry = dict(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.5, max=8),
                           retry=retry_if_exception_type(RETRYABLE), reraise=True,
                           **({"sleep": sleep} if sleep else {}))

    def run(self, chunks: list[str], instruction: str = DEFAULT_INSTRUCTION) -> Analysis:
        self.analysis = Analysis("", len(chunks))
        reply_tokens = self.config.REPLY_TOKENS
        if len(chunks) == 1:
            self.progress({"phase": "analysing", "done": 0, "total": 1})
            text = self._call(SINGLE_PROMPT.format(instruction=instruction), chunks[0], reply_tokens)
            self.progress({"phase": "analysing", "done": 1, "total": 1})
            self.analysis.text = text
            return self.analysis
        notes_tokens = max(64, reply_tokens // 2)
        done = [0]

        def analyse(item: tuple[int, str]) -> str:
            index, chunk = item
            if self.stopped():
                raise Stopped()
            prompt = MAP_PROMPT.format(part=index + 1, parts=len(chunks), instruction=instruction)
            try:
                notes = self._call(prompt, chunk, notes_tokens)
            except LLMError as error:  # one bad part must not sink the whole file
                with self._lock:
                    self.analysis.errors.append(error.message)
                notes = "(this part could not be analysed)"
            with self._lock:
                done[0] += 1
                self.progress({"phase": "analysing", "done": done[0], "total": len(chunks)})
            return f"Part {index + 1}:\n{notes}"

        self.progress({"phase": "analysing", "done": 0, "total": len(chunks)})
        notes = offload.bounded_map(analyse, list(enumerate(chunks)), self.config.FILE_WORKERS)
        if len(self.analysis.errors) == len(chunks):
            raise LLMError(self.analysis.errors[-1])
        self.progress({"phase": "combining", "done": len(chunks), "total": len(chunks)})
        window = self.config.context_window(self.client.model)
        reduce_prompt = REDUCE_PROMPT.format(instruction=instruction)
        text, _ = utils.summarise_recursive(notes, lambda joined, cap: self._call(reduce_prompt, joined, cap),
                                            reply_tokens, window)
        failed = len(self.analysis.errors)
        self.analysis.text = text + (f"\n\n_{failed} of {len(chunks)} parts could not be analysed._"
                                     if failed else "")
        return self.analysis

    def _call(self, system: str, text: str, max_tokens: int) -> str:
        """One cached, retried model call."""
        key = hashlib.sha256("\x00".join(["file", PROMPT_VERSION, self.client.model, str(max_tokens),
                                          system, text]).encode()).hexdigest()
        cached = self.store.cache_get(self.user_id, key)
        if cached is not None:
            with self._lock:
                self.analysis.cached_calls += 1
            return cached
        messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        for attempt in Retrying(**self._retry):
            with attempt:
                completion = self.client.complete(messages, max_tokens=max_tokens)
        with self._lock:
            self.analysis.model_calls += 1
        result = completion.text.strip()
        if not result:
            raise LLMError("The model returned an empty analysis.")
        self.store.cache_put(self.user_id, key, result)
        return result


def answer_in_chat(turn: Turn) -> Reply:
    """/file [instruction], or a message with a document attached: analyse that document (or the
    newest upload) for the instruction, reporting progress per chunk."""
    store = turn.deps.store
    document = (store.get_document(turn.user_id, turn.attachment) if turn.attachment
                else next(iter(store.list_documents(turn.user_id, 1)), None))
    if document is None:
        return turn.say(NO_FILE, "file")
    client = turn.clients.get("file")
    meta = {"document_id": document["document_id"], "file_name": document["file_name"]}
    if client is None:
        return turn.say(f"No model endpoint is configured, so I cannot analyse {document['file_name']}. "
                        "Ask about it with /ask to see the matching passages.", "file", meta)
    chunks = [chunk["content"] for chunk in store.document_chunks(turn.user_id, document["document_id"])]
    analyser = FileAnalyser(store, turn.user_id, client, turn.deps.config,
                            progress=lambda payload: turn.emitter.progress({**payload, **meta}),
                            stopped=turn.stopped)
    turn.emitter.status("analysing", f"Analysing {document['file_name']} ({len(chunks)} chunks)…")
    try:
        analysis = analyser.run(chunks, turn.text.strip() or DEFAULT_INSTRUCTION)
    except Stopped:
        return Reply("Analysis stopped.", "stopped", agent="file", meta=meta)
    except LLMError as error:
        turn.emitter.error(error.message)
        return Reply("", "error", agent="file", meta=meta)
    return turn.say(analysis.text, "file", {**meta, **analysis.public()})
