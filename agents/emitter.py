"""The seam between agents and the socket: agents report through an Emitter, never socketio."""
from __future__ import annotations

from typing import Protocol


class Emitter(Protocol):
    """What a running reply tells the page; the real one emits to the conversation's room."""

    def status(self, phase: str, detail: str = "") -> None:
        """A long silent phase started (summarising, waiting for the first token) or a notice."""

    def chunk(self, text: str) -> None:
        """More reply text; implementations may coalesce before sending."""

    def routing(self, decision: dict) -> None:
        """Which agent answers and why (the router's decision, without the message text)."""

    def progress(self, payload: dict) -> None:
        """A long job advanced (file analysis: chunks done of total)."""

    def usage(self, payload: dict) -> None: ...

    def done(self, message_id: str, finish_reason: str, extra: dict | None = None) -> None: ...

    def error(self, message: str) -> None: ...


class RecordingEmitter:
    """Keeps every event in order; for tests and for callers that want the reply as data."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def status(self, phase: str, detail: str = "") -> None:
        self.events.append(("status", {"phase": phase, "detail": detail}))

    def chunk(self, text: str) -> None:
        self.events.append(("chunk", text))

    def routing(self, decision: dict) -> None:
        self.events.append(("routing", decision))

    def progress(self, payload: dict) -> None:
        self.events.append(("progress", payload))

    def usage(self, payload: dict) -> None:
        self.events.append(("usage", payload))

    def done(self, message_id: str, finish_reason: str, extra: dict | None = None) -> None:
        self.events.append(("done", {"message_id": message_id, "finish_reason": finish_reason, **(extra or {})}))

    def last(self, kind: str):
        """The payload of the newest event of this kind (None if there is none)."""
        return next((payload for k, payload in reversed(self.events) if k == kind), None)

    def error(self, message: str) -> None:
        self.events.append(("error", message))

    def text(self) -> str:
        return "".join(payload for kind, payload in self.events if kind == "chunk")
