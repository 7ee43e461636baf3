"""What reading one document may cost, and the refusal raised when a file needs more.

The limits travel to the worker process as JSON; every refusal carries a message for the user.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

MB = 1024 * 1024
MAX_ZIP_ENTRIES = 2000  # a real .docx has tens of parts; hundreds with many images


class Refused(Exception):
    """The document cannot be read; `message` says why, in words for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_pages: int = 2000           # DOCUMENT_MAX_PAGES
    max_inflated_bytes: int = 50 * MB   # DOCUMENT_MAX_INFLATED_MB: a .docx unpacked, one PDF stream decoded
    max_text_bytes: int = 10 * MB   # DOCUMENT_MAX_TEXT_MB: the text extracted from one document
    timeout_s: float = 30.0         # DOCUMENT_TIMEOUT_S: wall-clock time for reading one document
    memory_bytes: int = 1024 * MB   # DOCUMENT_MEMORY_MB: the worker process's address space

    @classmethod
    def from_config(cls, config) -> Limits:
        return cls(max_pages=config.DOCUMENT_MAX_PAGES,
                   max_inflated_bytes=int(config.DOCUMENT_MAX_INFLATED_MB * MB),
                   max_text_bytes=int(config.DOCUMENT_MAX_TEXT_MB * MB),
                   timeout_s=config.DOCUMENT_TIMEOUT_S, memory_bytes=int(config.DOCUMENT_MEMORY_MB * MB))

    @classmethod
    def from_dict(cls, values: dict) -> Limits:
        return cls(**{name: values[name] for name in asdict(cls())})

    def as_dict(self) -> dict:
        return asdict(self)


def megabytes(size: int) -> str:
    """50 MB, 0.5 MB: sizes in messages."""
    return f"{round(size / MB, 2):g} MB"
