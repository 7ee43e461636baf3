"""The seam between agents and the socket: agents report through an Emitter, never socketio."""
from __future__ import annotations

from typing import Protocol


class Emitter(Protocol):
    """What a running reply tells the page; the real one emits to the conversation's room."""

    def status(self, phase: str, detail: str = "") -> None:
        """A long silent phase started (summarising, waiting for the first token) or a notice."""

    def chunk(self, text: str) -> None:
        """More reply text; implementations may coalesce before sending."""

    def usage(self, payload: dict) -> None: ...

    def done(self, message_id: str, finish_reason: str) -> None: ...

    def error(self, message: str) -> None: ...


class RecordingEmitter:
    """Keeps every event in order; for tests and for callers that want the reply as data."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def status(self, phase: str, detail: str = "") -> None:
        self.events.append(("status", {"phase": phase, "detail": detail}))

    def chunk(self, text: str) -> None:
        self.events.append(("chunk", text))

    def usage(self, payload: dict) -> None:
        self.events.append(("usage", payload))

    def done(self, message_id: str, finish_reason: str) -> None:
        self.events.append(("done", {"message_id": message_id, "finish_reason": finish_reason}))

    def error(self, message: str) -> None:
        self.events.append(("error", message))

    def text(self) -> str:
        return "".join(payload for kind, payload in self.events if kind == "chunk")
