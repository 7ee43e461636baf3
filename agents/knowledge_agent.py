"""Answers questions about the user's uploaded files from their best-matching chunks, with citations.

Retrieval fuses the store's full-text ranking (FTS5 bm25 / MongoDB textScore) over the chunks
kept at upload with their nearest vectors (semantic/hybrid.py: reciprocal rank fusion), so a
question that shares no word with the passage still finds it. The excerpts go into the system
prompt under a token cap, each headed by its source: [report.pdf, p. 3] for a PDF's pages,
[notes.docx, § Methods] for a DOCX's headings, [notes.txt, chunk 2] otherwise; the reply ends with the sources. With no model endpoint it still answers, by
quoting the passages it found.
"""
from __future__ import annotations

import utils
from agents import chat_agent
from agents.turn_types import Reply, Turn
from documents.sections import label
from semantic import hybrid
from storage.base import query_terms

EXCERPT_SHARE = 0.25  # at most this share of the context window goes to excerpts
QUOTE_CHARS = 600
NO_FILES = "You have not uploaded any files yet. Upload a file first, then ask about it with /ask."
NOTHING_FOUND = "I found nothing about that in your uploaded files ({names})."
INSTRUCTIONS = ("Answer the user's question from these excerpts of their uploaded files. Cite the "
                "sources you use exactly as each excerpt is headed, e.g. [report.pdf, p. 3] or "
                "[notes.txt, chunk 2]. If the excerpts do not contain the answer, say so rather than guessing.")


def answer(turn: Turn) -> Reply | None:
    deps = turn.deps
    hits = hybrid.search_chunks(deps.store, deps.config, turn.user_id, turn.text, deps.config.KNOWLEDGE_CHUNKS)
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
        block = f"[{_source(hit)}]\n{hit['content']}"
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
    words, _ = query_terms(turn.text)
    for hit in hits:
        lines.append(f"\n> {_passage(hit['content'], words)}\n\n— {_source(hit)}")
    return turn.say("\n".join(lines), "knowledge", {"citations": [_citation(hit) for hit in hits]})


def _passage(content: str, words: list[str]) -> str:
    """At most QUOTE_CHARS of the chunk, around the query word it holds fewest times (the telling
    one, not "is"): a page-long chunk's answer is rarely in its first lines."""
    passage = " ".join(content.split())
    if len(passage) <= QUOTE_CHARS:
        return passage
    lowered = passage.lower()
    found = sorted((lowered.count(word), lowered.find(word)) for word in words if word in lowered)
    start = max(0, found[0][1] - QUOTE_CHARS // 3) if found else 0
    start = start if start == 0 else passage.find(" ", start) + 1
    end = min(len(passage), start + QUOTE_CHARS)
    cut = passage[start:end] if end == len(passage) else passage[start:end].rsplit(" ", 1)[0]
    return ("… " if start else "") + cut + (" …" if end < len(passage) else "")


def _where(hit: dict) -> str:
    """'p. 3', '§ Methods', or 'chunk 2' for a chunk with no location (a text file's)."""
    return label(hit.get("meta")) or f"chunk {hit['index'] + 1}"


def _source(hit: dict) -> str:
    return f"{hit['file_name']}, {_where(hit)}"


def _sources(hits: list[dict]) -> str:
    return "; ".join(f"{hit['file_name']} ({_where(hit)})" for hit in hits)


def _citation(hit: dict) -> dict:
    """document_id, file_name, chunk; and for a document its location: pages or headings, and label."""
    citation = {"document_id": hit["document_id"], "file_name": hit["file_name"], "chunk": hit["index"] + 1}
    if label(hit.get("meta")):
        citation.update(hit["meta"], location=label(hit["meta"]))
    return citation
