"""File analysis: chunk a text file, analyse the chunks concurrently, reduce the analyses.

Map: every chunk is analysed by a bounded pool (FILE_WORKERS) with retries. Reduce: the
chunk analyses are combined with utils.summarise_recursive, recursively when they do not fit
one call. A file of more chunks than FILE_MAX_MODEL_CALLS allows is analysed in an evenly spread
selection of them (every chunk stays stored and searchable), and the answer says so: the cost of
one upload is bounded in calls and, as chunks have a fixed size, in tokens. Each model call is
cached by a hash of its exact input (per user), so the same file again, under any name, costs no
model calls. Prompts never contain the file name for that reason: a document's parts are labelled
with their pages or headings ([p. 3], [§ Methods]), the model cites those, and `cite` adds the
file name afterwards ([report.pdf, p. 3]). Tokenising yields to the event loop between lines
(agents/offload.py).
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

import chunking
import utils
from agents import offload
from agents.llm_client import LLMError, LLMStreamError, LLMUnavailable
from agents.turn_types import Reply, Turn
from documents.sections import label

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
LONG_FILE = ("\n\n_This file is long: {analysed} of its {chunks} parts were analysed, spread evenly "
             "through it. All of it is stored: ask about any part with /ask._")
WHERE = ("\nThis part is {where} of the document. Put the location in square brackets after each "
         "fact you note, as it is written here: [{where}].")
CITE_LOCATIONS = " Keep the locations in square brackets ([p. 3], [§ Methods]) after the facts they support."
NOTE_OVERHEAD_TOKENS = 16  # "Part 123:\n" and the line break between notes, with room to spare
NO_FILE = "You have no uploaded files yet. Upload a file, then ask about it with /file."
_LOCATION = re.compile(r"\[((?:pp?\.|§) [^\[\]\n]{1,200})\]")
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
    analysed_chunks: int = 0

    def public(self) -> dict:
        return {"chunks": self.chunks, "model_calls": self.model_calls, "cached_calls": self.cached_calls,
                "analysed_chunks": self.analysed_chunks}


def _where(location: str | None) -> str:
    return WHERE.format(where=location) if location else ""


def spread(total: int, wanted: int) -> list[int]:
    """`wanted` indexes out of range(total), evenly spread, first and last included."""
    if wanted >= total:
        return list(range(total))
    if wanted <= 1:
        return [0]
    return [round(i * (total - 1) / (wanted - 1)) for i in range(wanted)]


def reduce_calls(items: int, item_tokens: int, reply_tokens: int, room: int) -> int:
    """The calls utils.summarise_recursive makes at most for `items` lines of `item_tokens` each."""
    per_call = max(1, room // item_tokens)
    calls = -(-items // per_call)
    return 1 if calls <= 1 else calls + reduce_calls(calls, reply_tokens + 1, reply_tokens, room)


def cite(text: str, file_name: str) -> str:
    """[p. 3] -> [report.pdf, p. 3]: the model saw locations only (its prompts never hold file names)."""
    return _LOCATION.sub(lambda found: f"[{file_name}, {found.group(1)}]", text)


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

    def run(self, chunks: list[str], instruction: str = DEFAULT_INSTRUCTION,
            labels: list[str | None] | None = None) -> Analysis:
        """`labels`: each chunk's location ('p. 3', '§ Methods') or None; the analysis cites them."""
        self.analysis = Analysis("", len(chunks), analysed_chunks=1)
        reply_tokens = self.config.REPLY_TOKENS
        labels = labels or [None] * len(chunks)
        if len(chunks) == 1:
            self.progress({"phase": "analysing", "done": 0, "total": 1})
            text = self._call(SINGLE_PROMPT.format(instruction=instruction) + _where(labels[0]), chunks[0],
                              reply_tokens)
            self.progress({"phase": "analysing", "done": 1, "total": 1})
            self.analysis.text = text
            return self.analysis
        notes_tokens = max(64, reply_tokens // 2)
        window = self.config.context_window(self.client.model)
        label_tokens = max((utils.count_tokens(f" ({where})") for where in labels if where), default=0)
        picked = spread(len(chunks), self._map_budget(notes_tokens + label_tokens, window))
        self.analysis.analysed_chunks = len(picked)
        done = [0]

        def analyse(item: tuple[int, str]) -> str:
            index, chunk = item
            if self.stopped():
                raise Stopped()
            prompt = (MAP_PROMPT.format(part=index + 1, parts=len(chunks), instruction=instruction)
                      + _where(labels[index]))
            try:
                notes = utils.truncate_tokens(self._call(prompt, chunk, notes_tokens), notes_tokens)
            except LLMError as error:  # one bad part must not sink the whole file
                with self._lock:
                    self.analysis.errors.append(error.message)
                notes = "(this part could not be analysed)"
            with self._lock:
                done[0] += 1
                self.progress({"phase": "analysing", "done": done[0], "total": len(picked)})
            return f"Part {index + 1}{f' ({labels[index]})' if labels[index] else ''}:\n{notes}"

        self.progress({"phase": "analysing", "done": 0, "total": len(picked)})
        notes = offload.bounded_map(analyse, [(i, chunks[i]) for i in picked], self.config.FILE_WORKERS)
        if len(self.analysis.errors) == len(picked):
            raise LLMError(self.analysis.errors[-1])
        self.progress({"phase": "combining", "done": len(picked), "total": len(picked)})
        reduce_prompt = REDUCE_PROMPT.format(instruction=instruction) + (CITE_LOCATIONS if any(labels) else "")
        text, _ = utils.summarise_recursive(notes, lambda joined, cap: self._call(reduce_prompt, joined, cap),
                                            reply_tokens, window)
        failed = len(self.analysis.errors)
        self.analysis.text = text + (f"\n\n_{failed} of {len(picked)} parts could not be analysed._"
                                     if failed else "")
        if len(picked) < len(chunks):
            self.analysis.text += LONG_FILE.format(analysed=len(picked), chunks=len(chunks))
        return self.analysis

    def _map_budget(self, notes_tokens: int, window: int) -> int:
        """How many chunks to analyse so that they and the combining calls (worst case, notes
        cut to notes_tokens) stay within FILE_MAX_MODEL_CALLS: a file then costs at most that
        many calls of at most CHUNK_SIZE_TOKENS each."""
        cap, reply = self.config.FILE_MAX_MODEL_CALLS, self.config.REPLY_TOKENS
        room = max(2 * reply + 1, window - reply - utils.SUMMARISER_INSTRUCTIONS_TOKENS)
        wanted = cap - 1
        while wanted > 1 and wanted + reduce_calls(wanted, notes_tokens + NOTE_OVERHEAD_TOKENS, reply, room) > cap:
            wanted -= 1
        return wanted

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
    stored = store.document_chunks(turn.user_id, document["document_id"])
    chunks, labels = [chunk["content"] for chunk in stored], [label(chunk.get("meta")) for chunk in stored]
    analyser = FileAnalyser(store, turn.user_id, client, turn.deps.config,
                            progress=lambda payload: turn.emitter.progress({**payload, **meta}),
                            stopped=turn.stopped)
    turn.emitter.status("analysing", f"Analysing {document['file_name']} ({len(chunks)} chunks)…")
    try:
        analysis = analyser.run(chunks, turn.text.strip() or DEFAULT_INSTRUCTION, labels)
    except Stopped:
        return Reply("Analysis stopped.", "stopped", agent="file", meta=meta)
    except LLMError as error:
        turn.emitter.error(error.message)
        return Reply("", "error", agent="file", meta=meta)
    return turn.say(cite(analysis.text, document["file_name"]), "file", {**meta, **analysis.public()})
