"""Answers questions about the user's uploaded files from their best-matching chunks, with citations.

Retrieval is the store's full-text ranking (FTS5 bm25 / MongoDB textScore) over the chunks kept
at upload. The excerpts go into the system prompt under a token cap; the reply ends with the
sources. With no model endpoint it still answers, by quoting the passages it found.
"""
from __future__ import annotations

import utils
from agents import chat_agent
from agents.turn_types import Reply, Turn

EXCERPT_SHARE = 0.25  # at most this share of the context window goes to excerpts
QUOTE_CHARS = 600
NO_FILES = "You have not uploaded any files yet. Upload a text file first, then ask about it with /ask."
NOTHING_FOUND = "I found nothing about that in your uploaded files ({names})."
INSTRUCTIONS = ("Answer the user's question from these excerpts of their uploaded files. Cite the "
                "sources you use as [file name, chunk N]. If the excerpts do not contain the answer, "
                "say so rather than guessing.")


def answer(turn: Turn) -> Reply | None:
    deps = turn.deps
    hits = deps.store.search_chunks(turn.user_id, turn.text, limit=deps.config.KNOWLEDGE_CHUNKS)
    if not hits:
        names = [d["file_name"] for d in deps.store.list_documents(turn.user_id, 5)]
        return turn.say(NOTHING_FOUND.format(names=", ".join(names)) if names else NO_FILES, "knowledge",
                        {"citations": []})
    client = turn.clients.get("knowledge")
    if client is None:
        return _quote(turn, hits)
    cap = int(deps.config.context_window(client.model) * EXCERPT_SHARE)
    excerpts, used = _excerpts(hits, cap)
    reply = chat_agent.answer(turn, agent="knowledge", extra_system=INSTRUCTIONS + "\n\n" + excerpts)
    if reply is None:
        return None
    sources = _sources(used)
    if reply.finish_reason != "error" and reply.text:
        tail = f"\n\nSources: {sources}"
        turn.emitter.chunk(tail)
        reply.text += tail
    reply.meta["citations"] = [_citation(hit) for hit in used]
    return reply


def _excerpts(hits: list[dict], cap_tokens: int) -> tuple[str, list[dict]]:
    """Best hits first while they fit the cap (the first one always, truncated if need be)."""
    parts, used, total = [], [], 0
    for hit in hits:
        block = f"[{hit['file_name']}, chunk {hit['index'] + 1}]\n{hit['content']}"
        tokens = utils.count_tokens(block)
        if used and total + tokens > cap_tokens:
            break
        if tokens > cap_tokens:
            block = utils.truncate_tokens(block, cap_tokens)
        parts.append(block)
        used.append(hit)
        total += tokens
    return "\n\n".join(parts), used


def _quote(turn: Turn, hits: list[dict]) -> Reply:
    """No model: the passages themselves, so the question still gets an answer of sorts."""
    lines = ["No model endpoint is configured, so here are the passages of your files that match best:"]
    for hit in hits:
        passage = " ".join(hit["content"].split())
        if len(passage) > QUOTE_CHARS:
            passage = passage[:QUOTE_CHARS].rsplit(" ", 1)[0] + " …"
        lines.append(f"\n> {passage}\n\n— {hit['file_name']}, chunk {hit['index'] + 1}")
    return turn.say("\n".join(lines), "knowledge", {"citations": [_citation(hit) for hit in hits]})


def _sources(hits: list[dict]) -> str:
    return "; ".join(f"{hit['file_name']} (chunk {hit['index'] + 1})" for hit in hits)


def _citation(hit: dict) -> dict:
    return {"document_id": hit["document_id"], "file_name": hit["file_name"], "chunk": hit["index"] + 1}
