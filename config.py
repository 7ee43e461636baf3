"""All settings, read once from the environment and `.env`.

No other module reads `os.environ`: they take a Config (or Flask's app.config).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent
STORE_SCHEMES = ("mongodb", "mongodb+srv")


class ConfigError(ValueError):
    """A setting is invalid; the message names it and is shown as one line."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _number(name: str, default: str, kind=int):
    raw = _env(name, default)
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _flag(name: str, default: str) -> bool:
    return _env(name, default).lower() in ("1", "true", "yes", "on")


class Config:
    """Settings from the environment; names follow seed 001 §10.2."""

    def __init__(self) -> None:
        load_dotenv(ROOT / ".env")
        self.APP_ENV = _env("APP_ENV", "development")
        self.INSTANCE_PATH = Path(_env("INSTANCE_PATH", str(ROOT / "instance")))
        self.SECRET_KEY = _env("SECRET_KEY")
        self.MONGODB_URI = _env("MONGODB_URI")
        self.MONGODB_DB = _env("MONGODB_DB", "chatbot_db")
        self.SQLITE_PATH = _env("SQLITE_PATH")
        self.REDIS_URL = _env("REDIS_URL")
        self.MAX_TOKENS = _number("MAX_TOKENS", "128000")
        self.REPLY_TOKENS = _number("REPLY_TOKENS", "800")
        self.CHUNK_SIZE_TOKENS = _number("CHUNK_SIZE_TOKENS", "1000")
        self.MAX_FILE_SIZE_MB = _number("MAX_FILE_SIZE_MB", "5.0", float)
        self.ALLOWED_EXTENSIONS = _extensions(_env("ALLOWED_EXTENSIONS", "txt,md,json"))
        self.OPENAI_BASE_URL = _env("OPENAI_BASE_URL") or _env("AZURE_API_URL")
        self.OPENAI_API_KEY = _env("OPENAI_API_KEY") or _env("API_KEY")
        self.MODEL = _env("MODEL", "gpt-4o-mini")
        self.HOST = _env("HOST", "127.0.0.1")
        self.PORT = _number("PORT", "5000")
        self.LOG_LEVEL = _env("LOG_LEVEL", "INFO").upper()
        self.AUTO_MIGRATE = _flag("AUTO_MIGRATE", "true")
        self.SEARCH_CANDIDATES = _number("SEARCH_CANDIDATES", "2000")
        self.ASYNC_MODE = _env("ASYNC_MODE", "threading")
        self.ENDPOINT_TIMEOUT_S = _number("ENDPOINT_TIMEOUT_S", "2.0", float)
        self.SYSTEM_PROMPT = _env("SYSTEM_PROMPT", "You are a helpful assistant.")
        self.COMPACT_AT = _number("COMPACT_AT", "0.8", float)
        self.SUMMARY_TOKENS = _number("SUMMARY_TOKENS", "500")
        self.SUMMARY_MODEL = _env("SUMMARY_MODEL")
        self.MODEL_CONTEXT_WINDOWS = _windows(_env("MODEL_CONTEXT_WINDOWS", ""))
        self.STREAM_FLUSH_MS = _number("STREAM_FLUSH_MS", "50")

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    def validate(self) -> "Config":
        """Raise ConfigError naming the first bad setting."""
        if self.APP_ENV not in ("development", "production", "testing"):
            raise ConfigError(f"APP_ENV must be development, production or testing, got {self.APP_ENV!r}")
        for name in ("MAX_TOKENS", "REPLY_TOKENS", "CHUNK_SIZE_TOKENS", "SEARCH_CANDIDATES"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        if not 0.1 <= self.COMPACT_AT <= 1.0:
            raise ConfigError(f"COMPACT_AT must be between 0.1 and 1.0, got {self.COMPACT_AT}")
        for model, window in self.MODEL_CONTEXT_WINDOWS.items():
            if window <= self.REPLY_TOKENS:
                raise ConfigError(f"MODEL_CONTEXT_WINDOWS: {model}={window} must be larger than REPLY_TOKENS")
        if self.MAX_FILE_SIZE_MB <= 0:
            raise ConfigError(f"MAX_FILE_SIZE_MB must be a positive number, got {self.MAX_FILE_SIZE_MB}")
        if self.MAX_TOKENS <= self.REPLY_TOKENS:
            raise ConfigError(
                f"MAX_TOKENS ({self.MAX_TOKENS}) must be larger than REPLY_TOKENS ({self.REPLY_TOKENS})")
        if not 0 < self.PORT < 65536:
            raise ConfigError(f"PORT must be between 1 and 65535, got {self.PORT}")
        if self.ASYNC_MODE not in ("threading", "eventlet", "gevent"):
            raise ConfigError(f"ASYNC_MODE must be threading, eventlet or gevent, got {self.ASYNC_MODE!r}")
        if not self.ALLOWED_EXTENSIONS:
            raise ConfigError("ALLOWED_EXTENSIONS must list at least one extension")
        _check_uri("MONGODB_URI", self.MONGODB_URI, STORE_SCHEMES)
        _check_uri("REDIS_URL", self.REDIS_URL, ("redis", "rediss", "unix"))
        _check_uri("OPENAI_BASE_URL", self.OPENAI_BASE_URL, ("http", "https"))
        if self.is_production and not self.SECRET_KEY:
            raise ConfigError("SECRET_KEY must be set when APP_ENV=production")
        return self

    def context_window(self, model: str) -> int:
        """The model's window from MODEL_CONTEXT_WINDOWS, else MAX_TOKENS."""
        return self.MODEL_CONTEXT_WINDOWS.get(model, self.MAX_TOKENS)

    def flask_settings(self) -> dict:
        """The subset Flask and its extensions read from app.config."""
        return {
            "SECRET_KEY": self.SECRET_KEY or self._development_secret(),
            "MAX_CONTENT_LENGTH": int(self.MAX_FILE_SIZE_MB * 1024 * 1024) + 64 * 1024,
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": self.is_production,
            "TESTING": self.APP_ENV == "testing",
        }

    def _development_secret(self) -> str:
        """A random key kept in instance/, so sessions survive restarts in development."""
        path = self.INSTANCE_PATH / "secret_key"
        if not path.exists():
            self.INSTANCE_PATH.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def sqlite_path(self) -> Path:
        return Path(self.SQLITE_PATH) if self.SQLITE_PATH else self.INSTANCE_PATH / "chat.sqlite3"


class TestConfig(Config):
    """Test settings: a private instance folder, no Redis, no endpoint unless a test sets one."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, instance_path: Path, **overrides) -> None:
        super().__init__()
        self.APP_ENV = "testing"
        self.INSTANCE_PATH = Path(instance_path)
        self.SQLITE_PATH = None
        self.MONGODB_URI = None
        self.REDIS_URL = None
        self.OPENAI_BASE_URL = None
        self.OPENAI_API_KEY = None
        self.SECRET_KEY = "test-secret-key"
        for name, value in overrides.items():
            setattr(self, name, value)


def _extensions(raw: str) -> frozenset[str]:
    return frozenset(part.strip().lower().lstrip(".") for part in raw.split(",") if part.strip())


def _windows(raw: str) -> dict[str, int]:
    """`model=tokens,other=tokens` -> {model: tokens}."""
    windows = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        model, _, tokens = part.rpartition("=")
        if not model or not tokens.strip().isdigit():
            raise ConfigError(f"MODEL_CONTEXT_WINDOWS must look like 'model=8192,other=32768', got {part!r}")
        windows[model.strip()] = int(tokens)
    return windows


def _check_uri(name: str, value: str | None, schemes: tuple[str, ...]) -> None:
    if value and urlparse(value).scheme not in schemes:
        raise ConfigError(f"{name} must start with {' or '.join(s + '://' for s in schemes)}, got scheme "
                          f"{urlparse(value).scheme or '(none)'!r}")
