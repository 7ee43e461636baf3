"""The data one turn carries between the dispatcher and the agents."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.calibration import Calibration
from agents.providers import Providers
from storage import ConversationStore


@dataclass
class TurnDeps:
    """What lives for the whole app: built once, shared by every turn."""

    store: ConversationStore
    config: object
    providers: Providers
    calibration: Calibration


class AgentClients:
    """Model clients for one turn, made on first use and closed when the turn ends."""

    PICKABLE = ("chat", "knowledge")  # the agents that answer with the model the page picked

    def __init__(self, providers: Providers, model: str | None = None) -> None:
        self.providers, self.model = providers, model
        self._made: dict[str, object] = {}

    def get(self, agent: str):
        """The agent's failover client, or None when no endpoint is configured."""
        if agent not in self._made:
            model = self.model if agent in self.PICKABLE else None
            self._made[agent] = self.providers.client(agent, model)
        return self._made[agent]

    def close(self) -> None:
        for client in self._made.values():
            if client is not None:
                client.close()
        self._made.clear()


@dataclass
class Turn:
    deps: TurnDeps
    user_id: str
    conversation_id: str
    user_message_id: str
    reply_id: str
    emitter: object
    stopped: Callable[[], bool]
    clients: AgentClients
    text: str = ""  # the user's message without any router command
    attachment: str | None = None  # a document_id the message is about
    vision: object | None = None  # agents/vision.Choice when the message has images
    started: float = field(default_factory=time.monotonic)  # for the reply's latency_ms

    def say(self, text: str, agent: str, meta: dict | None = None, finish_reason: str = "stop") -> Reply:
        """A whole reply at once (no model stream): sent to the page, returned for storing."""
        self.emitter.chunk(text)
        return Reply(text, finish_reason, agent=agent, meta=meta or {})


@dataclass
class Reply:
    """What an agent produced; the dispatcher stores it and reports usage."""

    text: str
    finish_reason: str
    prompt_tokens: int = 0
    usage: dict | None = None
    summary_tokens: int = 0
    agent: str = "chat"
    meta: dict = field(default_factory=dict)
    # jobs for after the turn, once the conversation is free again (never stored)
    followups: list[Callable[[], None]] = field(default_factory=list)
