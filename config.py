"""All settings, read once from the environment and `.env`.

No other module reads `os.environ` (but gunicorn.conf.py, for the settings only it uses): they take a
Config (or Flask's app.config).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

import limits
from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent
STORE_SCHEMES = ("mongodb", "mongodb+srv")
AGENTS = ("chat", "knowledge", "file", "summary", "router", "vision")  # the agents that call a model
IMAGE_DETAILS = ("auto", "low", "high")  # OpenAI's image_url detail levels
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    """Settings from the environment; names are the public contract (README's Configuration)."""

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
        self.IMPORT_MAX_MB = _number("IMPORT_MAX_MB", "50", float)
        self.ALLOWED_EXTENSIONS = _extensions(_env("ALLOWED_EXTENSIONS", "txt,md,json,pdf,docx"))
        self.OPENAI_BASE_URL = _env("OPENAI_BASE_URL") or _env("AZURE_API_URL")
        self.OPENAI_API_KEY = _env("OPENAI_API_KEY") or _env("API_KEY")
        self.MODEL = _env("MODEL", "gpt-4o-mini")
        self.HOST = _env("HOST", "127.0.0.1")
        self.PORT = _number("PORT", "5000")
        self.LOG_LEVEL = _env("LOG_LEVEL", "INFO").upper()
        self.LOG_FORMAT = _env("LOG_FORMAT", "text").lower()
        self.LOG_FILE = _env("LOG_FILE")
        self.LOG_MAX_BYTES = _number("LOG_MAX_BYTES", str(10 * 1024 * 1024))
        self.LOG_BACKUPS = _number("LOG_BACKUPS", "5")
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
        self.STREAM_FLUSH_MAX_MS = _number("STREAM_FLUSH_MAX_MS", "250")  # while the event loop lags
        self.INSTANCE_TTL_S = _number("INSTANCE_TTL_S", "30", float)  # an instance silent this long is dead
        self.AGENT_MODELS = _mapping("AGENT_MODELS", _env("AGENT_MODELS", ""))
        self.AGENT_ENDPOINTS = _mapping("AGENT_ENDPOINTS", _env("AGENT_ENDPOINTS", ""))
        self.AGENT_API_KEYS = _mapping("AGENT_API_KEYS", _env("AGENT_API_KEYS", ""))
        self.FALLBACK_BASE_URL = _env("FALLBACK_BASE_URL")
        self.FALLBACK_API_KEY = _env("FALLBACK_API_KEY")
        self.FALLBACK_MODEL = _env("FALLBACK_MODEL")
        self.BREAKER_FAIL_MAX = _number("BREAKER_FAIL_MAX", "3")
        self.BREAKER_RESET_S = _number("BREAKER_RESET_S", "30", float)
        self.ROUTER_LLM = _flag("ROUTER_LLM", "false")
        self.AUTO_TITLE = _flag("AUTO_TITLE", "true")
        self.RATELIMIT_ENABLED = _flag("RATELIMIT_ENABLED", "true")
        self.RATELIMIT_PER_USER = _env("RATELIMIT_PER_USER", "300 per minute")
        self.RATELIMIT_PER_IP = _env("RATELIMIT_PER_IP", "1200 per minute")
        self.RATELIMIT_MESSAGES = _env("RATELIMIT_MESSAGES", "30 per minute")
        self.MAX_CONCURRENT_GENERATIONS = _number("MAX_CONCURRENT_GENERATIONS", "2")
        self.TRUSTED_PROXIES = _number("TRUSTED_PROXIES", "0")
        # -- socket abuse guard (web/socket_guard.py); 0 turns a limit off
        self.SOCKET_EVENTS_PER_S = _number("SOCKET_EVENTS_PER_S", "20", float)  # per connection, sustained
        self.SOCKET_EVENT_BURST = _number("SOCKET_EVENT_BURST", "60")  # per connection, at once
        self.MAX_SOCKETS_PER_IP = _number("MAX_SOCKETS_PER_IP", "20")  # open at once, per instance
        self.MAX_SOCKETS = _number("MAX_SOCKETS", "9000")  # per instance; below WORKER_CONNECTIONS
        self.AUTH_REQUIRED = _flag("AUTH_REQUIRED", "false")
        # -- accounts and registration
        self.REGISTRATION = _env("REGISTRATION")  # open | invite | closed; None: see registration_mode
        self.ADMIN_USERNAME = _env("ADMIN_USERNAME")
        self.ADMIN_PASSWORD = _env("ADMIN_PASSWORD")  # creates ADMIN_USERNAME at start-up; never logged
        self.RATELIMIT_MESSAGES_PER_IP = _env("RATELIMIT_MESSAGES_PER_IP", "60 per minute")
        self.ALLOWED_ORIGINS = [o.strip().rstrip("/") for o in _env("ALLOWED_ORIGINS", "").split(",") if o.strip()]
        self.UPLOAD_QUOTA_MB = _number("UPLOAD_QUOTA_MB", "100", float)
        self.UPLOAD_TOTAL_MB = _number("UPLOAD_TOTAL_MB", "2000", float)
        self.csrf_protection = True  # not a setting (lower case): only TestConfig turns it off
        self.FILE_WORKERS = _number("FILE_WORKERS", "4")
        self.CHUNK_OVERLAP_TOKENS = _number("CHUNK_OVERLAP_TOKENS", "100")
        self.KNOWLEDGE_CHUNKS = _number("KNOWLEDGE_CHUNKS", "4")
        # -- search by meaning (semantic/): a local embedding model, vectors in the store, hybrid ranking
        self.EMBEDDINGS = _flag("EMBEDDINGS", "true")  # off: search and the knowledge agent are keyword-only
        self.EMBED_INDEXER = _flag("EMBED_INDEXER", "true")  # this process embeds new messages and chunks
        self.EMBED_BATCH = _number("EMBED_BATCH", "32")  # texts per model call in the background indexer
        self.EMBED_POLL_S = _number("EMBED_POLL_S", "1.0", float)  # the indexer's nap when nothing is new
        self.EMBED_SEARCH_CANDIDATES = _number("EMBED_SEARCH_CANDIDATES", "10000")  # newest vectors scored per query
        # -- quotas and costs
        self.FILE_MAX_MODEL_CALLS = _number("FILE_MAX_MODEL_CALLS", "25")  # per file analysis, combining included
        self.STORAGE_QUOTA_MB = _number("STORAGE_QUOTA_MB", "500", float)  # per user: stored messages and imports
        self.IMPORTS_AT_ONCE = _number("IMPORTS_AT_ONCE", "2")  # for the whole server; one per user
        self.ENDPOINT_PROBE_CACHE_S = _number("ENDPOINT_PROBE_CACHE_S", "30", float)  # /health's endpoint check
        # -- math pool
        self.MATH_WORKERS = _number("MATH_WORKERS", "2")  # sandbox processes shared by all users (>= 1)
        self.MATH_QUEUE_WAIT_S = _number("MATH_QUEUE_WAIT_S", "3", float)  # then "busy, try again"
        # -- PDF and DOCX uploads (documents/): each read by one worker process under these limits
        self.DOCUMENT_MAX_PAGES = _number("DOCUMENT_MAX_PAGES", "2000")  # a PDF with more is refused
        self.DOCUMENT_MAX_INFLATED_MB = _number("DOCUMENT_MAX_INFLATED_MB", "50", float)  # .docx unpacked, a PDF stream
        self.DOCUMENT_MAX_TEXT_MB = _number("DOCUMENT_MAX_TEXT_MB", "10", float)  # text extracted from one file
        self.DOCUMENT_TIMEOUT_S = _number("DOCUMENT_TIMEOUT_S", "30", float)  # reading one file, wall clock
        self.DOCUMENT_MEMORY_MB = _number("DOCUMENT_MEMORY_MB", "1024", float)  # the worker's address space
        self.DOCUMENT_WORKERS = _number("DOCUMENT_WORKERS", "2")  # reading at once, per server process
        # -- images attached to messages (web/images.py, agents/vision.py)
        self.VISION_MODELS = [p.strip() for p in _env("VISION_MODELS", "gpt-4o*,gpt-4.1*,gpt-5*,*vision*,*llava*,"
                                                        "*-vl*,*gemma3*").split(",") if p.strip()]  # fnmatch
        self.IMAGE_DETAIL = _env("IMAGE_DETAIL", "auto").lower()  # sent with each image; auto is budgeted as high
        self.IMAGE_MAX_MB = _number("IMAGE_MAX_MB", "10", float)  # one image as uploaded
        self.IMAGE_MAX_PIXELS = _number("IMAGE_MAX_PIXELS", "40000000")  # decompression-bomb limit (width x height)
        self.IMAGES_PER_MESSAGE = _number("IMAGES_PER_MESSAGE", "4")

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    def validate(self) -> Config:
        """Raise ConfigError naming the first bad setting."""
        if self.APP_ENV not in ("development", "production", "testing"):
            raise ConfigError(f"APP_ENV must be development, production or testing, got {self.APP_ENV!r}")
        for name in ("MAX_TOKENS", "REPLY_TOKENS", "CHUNK_SIZE_TOKENS", "SEARCH_CANDIDATES", "BREAKER_FAIL_MAX",
                     "FILE_WORKERS", "KNOWLEDGE_CHUNKS", "LOG_MAX_BYTES", "LOG_BACKUPS", "MAX_CONCURRENT_GENERATIONS",
                     "MATH_WORKERS"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("RATELIMIT_PER_USER", "RATELIMIT_PER_IP", "RATELIMIT_MESSAGES"):
            try:
                limits.parse_many(getattr(self, name))
            except ValueError:
                raise ConfigError(f"{name} must be a rate like '30 per minute' or '5/second', "
                                  f"got {getattr(self, name)!r}") from None
        for name in ("EMBED_BATCH", "EMBED_POLL_S", "EMBED_SEARCH_CANDIDATES"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        self._validate_accounts()
        self._validate_quotas()
        # -- socket abuse guard
        for name in ("SOCKET_EVENTS_PER_S", "SOCKET_EVENT_BURST", "MAX_SOCKETS_PER_IP", "MAX_SOCKETS"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (off) or more, got {getattr(self, name)}")
        if self.SOCKET_EVENTS_PER_S and self.SOCKET_EVENT_BURST < 1:
            raise ConfigError("SOCKET_EVENT_BURST must be at least 1 when SOCKET_EVENTS_PER_S is set")
        if not 0 <= self.TRUSTED_PROXIES <= 5:
            raise ConfigError(f"TRUSTED_PROXIES must be between 0 and 5, got {self.TRUSTED_PROXIES}")
        if not 0 <= self.CHUNK_OVERLAP_TOKENS <= self.CHUNK_SIZE_TOKENS // 2:
            raise ConfigError(f"CHUNK_OVERLAP_TOKENS must be between 0 and half of CHUNK_SIZE_TOKENS, "
                              f"got {self.CHUNK_OVERLAP_TOKENS}")
        unknown = set(self.AGENT_MODELS) | set(self.AGENT_ENDPOINTS) | set(self.AGENT_API_KEYS)
        unknown -= set(AGENTS)
        if unknown:
            raise ConfigError(f"AGENT_MODELS, AGENT_ENDPOINTS and AGENT_API_KEYS take agents "
                              f"{', '.join(AGENTS)}; got {', '.join(sorted(unknown))}")
        if not 0.1 <= self.COMPACT_AT <= 1.0:
            raise ConfigError(f"COMPACT_AT must be between 0.1 and 1.0, got {self.COMPACT_AT}")
        for model, window in self.MODEL_CONTEXT_WINDOWS.items():
            if window <= self.REPLY_TOKENS:
                raise ConfigError(f"MODEL_CONTEXT_WINDOWS: {model}={window} must be larger than REPLY_TOKENS")
        for name in ("MAX_FILE_SIZE_MB", "IMPORT_MAX_MB", "UPLOAD_QUOTA_MB", "UPLOAD_TOTAL_MB"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("DOCUMENT_MAX_PAGES", "DOCUMENT_MAX_INFLATED_MB", "DOCUMENT_MAX_TEXT_MB", "DOCUMENT_TIMEOUT_S",
                     "DOCUMENT_MEMORY_MB", "DOCUMENT_WORKERS"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("IMAGE_MAX_MB", "IMAGE_MAX_PIXELS", "IMAGES_PER_MESSAGE"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        if self.IMAGE_DETAIL not in IMAGE_DETAILS:
            raise ConfigError(f"IMAGE_DETAIL must be one of {', '.join(IMAGE_DETAILS)}, got {self.IMAGE_DETAIL!r}")
        if self.MATH_QUEUE_WAIT_S < 0:
            raise ConfigError(f"MATH_QUEUE_WAIT_S must be 0 or more, got {self.MATH_QUEUE_WAIT_S}")
        if self.MAX_TOKENS <= self.REPLY_TOKENS:
            raise ConfigError(
                f"MAX_TOKENS ({self.MAX_TOKENS}) must be larger than REPLY_TOKENS ({self.REPLY_TOKENS})")
        if not 0 < self.PORT < 65536:
            raise ConfigError(f"PORT must be between 1 and 65535, got {self.PORT}")
        if self.LOG_LEVEL not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.LOG_LEVEL!r}")
        if self.LOG_FORMAT not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json, got {self.LOG_FORMAT!r}")
        if self.ASYNC_MODE not in ("threading", "eventlet", "gevent"):
            raise ConfigError(f"ASYNC_MODE must be threading, eventlet or gevent, got {self.ASYNC_MODE!r}")
        if not self.ALLOWED_EXTENSIONS:
            raise ConfigError("ALLOWED_EXTENSIONS must list at least one extension")
        for origin in self.ALLOWED_ORIGINS:
            _check_uri("ALLOWED_ORIGINS", origin, ("http", "https"))
        _check_uri("MONGODB_URI", self.MONGODB_URI, STORE_SCHEMES)
        _check_uri("REDIS_URL", self.REDIS_URL, ("redis", "rediss", "unix"))
        _check_uri("OPENAI_BASE_URL", self.OPENAI_BASE_URL, ("http", "https"))
        _check_uri("FALLBACK_BASE_URL", self.FALLBACK_BASE_URL, ("http", "https"))
        for agent, url in self.AGENT_ENDPOINTS.items():
            _check_uri(f"AGENT_ENDPOINTS ({agent})", url, ("http", "https"))
        if self.is_production and not self.SECRET_KEY:
            raise ConfigError("SECRET_KEY must be set when APP_ENV=production")
        return self

    # -- accounts and registration
    @property
    def registration_mode(self) -> str:
        """REGISTRATION, else closed when AUTH_REQUIRED (the operator's key is not for strangers)."""
        return (self.REGISTRATION or ("closed" if self.AUTH_REQUIRED else "open")).lower()

    def _validate_accounts(self) -> None:
        if self.registration_mode not in ("open", "invite", "closed"):
            raise ConfigError(f"REGISTRATION must be open, invite or closed, got {self.REGISTRATION!r}")
        if self.registration_mode == "invite" and not self.ADMIN_USERNAME:
            raise ConfigError("REGISTRATION=invite needs ADMIN_USERNAME: the account that creates invites")
        if self.ADMIN_PASSWORD and not self.ADMIN_USERNAME:
            raise ConfigError("ADMIN_PASSWORD is set but ADMIN_USERNAME is not")
        if self.ADMIN_PASSWORD is not None and not 8 <= len(self.ADMIN_PASSWORD) <= 200:
            raise ConfigError("ADMIN_PASSWORD must be 8 to 200 characters")  # never echo the value
        try:
            limits.parse_many(self.RATELIMIT_MESSAGES_PER_IP)
        except ValueError:
            raise ConfigError(f"RATELIMIT_MESSAGES_PER_IP must be a rate like '60 per minute', "
                              f"got {self.RATELIMIT_MESSAGES_PER_IP!r}") from None

    # -- quotas and costs
    def _validate_quotas(self) -> None:
        if self.FILE_MAX_MODEL_CALLS < 2:
            raise ConfigError(f"FILE_MAX_MODEL_CALLS must be at least 2 (one part and the combining call), "
                              f"got {self.FILE_MAX_MODEL_CALLS}")
        for name in ("STORAGE_QUOTA_MB", "IMPORTS_AT_ONCE"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        if self.ENDPOINT_PROBE_CACHE_S < 0:
            raise ConfigError(f"ENDPOINT_PROBE_CACHE_S must be 0 or more, got {self.ENDPOINT_PROBE_CACHE_S}")

    def context_window(self, model: str) -> int:
        """The model's window from MODEL_CONTEXT_WINDOWS, else MAX_TOKENS."""
        return self.MODEL_CONTEXT_WINDOWS.get(model, self.MAX_TOKENS)

    def flask_settings(self) -> dict:
        """The subset Flask and its extensions read from app.config."""
        return {
            "SECRET_KEY": self.SECRET_KEY or self._development_secret(),
            "MAX_CONTENT_LENGTH": int(max(self.MAX_FILE_SIZE_MB, self.IMAGE_MAX_MB) * 1024 * 1024) + 64 * 1024,
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": self.is_production,
            "TESTING": self.APP_ENV == "testing",
            "WTF_CSRF_ENABLED": self.csrf_protection,
            "WTF_CSRF_TIME_LIMIT": None,  # valid as long as the session: a page left open still works
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

    @property
    def log_path(self) -> Path | None:
        """LOG_FILE, a relative path taken under INSTANCE_PATH; None logs to stderr only."""
        if not self.LOG_FILE:
            return None
        path = Path(self.LOG_FILE).expanduser()
        return path if path.is_absolute() else self.INSTANCE_PATH / path


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
        self.FALLBACK_BASE_URL = None
        self.FALLBACK_API_KEY = None
        self.AGENT_ENDPOINTS, self.AGENT_API_KEYS, self.AGENT_MODELS = {}, {}, {}
        self.AUTO_TITLE = False  # tests that count model requests would see the title call
        self.EMBED_INDEXER = False  # tests embed with semantic.indexer.Indexer.step() when they need vectors
        self.RATELIMIT_ENABLED = False  # on in tests/test_limits.py, which tests them
        self.csrf_protection = False  # on in tests/test_security.py and in the browser tests (python app.py)
        self.LOG_FILE = None  # a LOG_FILE in .env is for the real server, not for test runs
        self.SECRET_KEY = "test-secret-key"
        for name, value in overrides.items():
            setattr(self, name, value)


def _extensions(raw: str) -> frozenset[str]:
    return frozenset(part.strip().lower().lstrip(".") for part in raw.split(",") if part.strip())


def _windows(raw: str) -> dict[str, int]:
    """`model=tokens,other=tokens` -> {model: tokens}."""
    windows = _mapping("MODEL_CONTEXT_WINDOWS", raw, "model=8192,other=32768", split_last=True)
    for model, tokens in windows.items():
        if not tokens.isdigit():
            raise ConfigError(f"MODEL_CONTEXT_WINDOWS must look like 'model=8192,other=32768', got {model}={tokens!r}")
    return {model: int(tokens) for model, tokens in windows.items()}


def _mapping(name: str, raw: str, example: str = "file=gpt-4o-mini,summary=gpt-4o-mini",
             split_last: bool = False) -> dict[str, str]:
    """`key=value,key=value` -> {key: value}; URLs may contain '=' so the first '=' splits."""
    found = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, _, value = part.rpartition("=") if split_last else part.partition("=")
        if not key.strip() or not value.strip():
            raise ConfigError(f"{name} must look like '{example}', got {part!r}")
        found[key.strip()] = value.strip()
    return found


def _check_uri(name: str, value: str | None, schemes: tuple[str, ...]) -> None:
    if value and urlparse(value).scheme not in schemes:
        raise ConfigError(f"{name} must start with {' or '.join(s + '://' for s in schemes)}, got scheme "
                          f"{urlparse(value).scheme or '(none)'!r}")
