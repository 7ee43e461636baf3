"""Settings: the contract's names, clear one-line errors, the development secret."""
import subprocess
import sys
from pathlib import Path

import pytest

from config import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment for Config: no .env influence, a private instance folder."""
    for name in ("SECRET_KEY", "MONGODB_URI", "REDIS_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY",
                 "AZURE_API_URL", "API_KEY", "APP_ENV", "MAX_TOKENS", "REPLY_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("config.load_dotenv", lambda *a, **k: None)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    return monkeypatch


def test_config_defaults_follow_the_seed(env):
    config = Config().validate()
    assert (config.MAX_TOKENS, config.REPLY_TOKENS, config.CHUNK_SIZE_TOKENS) == (128000, 800, 1000)
    assert config.MAX_FILE_SIZE_MB == 5.0 and config.ALLOWED_EXTENSIONS == {"txt", "md", "json", "pdf", "docx"}
    assert (config.HOST, config.PORT) == ("127.0.0.1", 5000)


def test_config_accepts_the_seeds_azure_names(env):
    env.setenv("AZURE_API_URL", "https://example.openai.azure.com/openai/deployments/x")
    env.setenv("API_KEY", "abc")
    config = Config().validate()
    assert config.OPENAI_BASE_URL.startswith("https://example") and config.OPENAI_API_KEY == "abc"


@pytest.mark.parametrize("name, value, named", [
    ("MAX_TOKENS", "800", "MAX_TOKENS"),
    ("REPLY_TOKENS", "-5", "REPLY_TOKENS"),
    ("CHUNK_SIZE_TOKENS", "0", "CHUNK_SIZE_TOKENS"),
    ("MAX_FILE_SIZE_MB", "-1", "MAX_FILE_SIZE_MB"),
    ("MAX_TOKENS", "lots", "MAX_TOKENS"),
    ("MONGODB_URI", "postgres://localhost/db", "MONGODB_URI"),
    ("REDIS_URL", "http://localhost", "REDIS_URL"),
    ("OPENAI_BASE_URL", "ftp://x", "OPENAI_BASE_URL"),
    ("PORT", "70000", "PORT"),
    ("ALLOWED_EXTENSIONS", ",", "ALLOWED_EXTENSIONS"),
    ("ASYNC_MODE", "tornado", "ASYNC_MODE"),
])
def test_config_invalid_setting_is_named(env, name, value, named):
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        Config().validate()


def test_config_production_requires_secret_key(env):
    env.setenv("APP_ENV", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Config().validate()


def test_config_development_secret_is_generated_once_and_kept(env, tmp_path):
    first = Config().validate().flask_settings()["SECRET_KEY"]
    second = Config().validate().flask_settings()["SECRET_KEY"]
    assert first == second and len(first) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_config_bad_setting_stops_start_up_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
                            env={"PATH": "/usr/bin:/bin", "MAX_TOKENS": "100", "REPLY_TOKENS": "800",
                                 "INSTANCE_PATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: MAX_TOKENS (100) must be larger than REPLY_TOKENS (800)"]


def test_config_importing_app_builds_nothing():
    code = "import app, sys; assert app._app is None; assert 'storage.sqlite_store' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)


def test_config_every_setting_is_in_env_example(env):
    import re
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    settings = {name for name in vars(Config()) if name.isupper()}
    assert settings == documented


def test_config_per_model_context_windows(env):
    env.setenv("MODEL_CONTEXT_WINDOWS", "llama3.1:8b=8192, qwen2.5=32768")
    config = Config().validate()
    assert config.context_window("llama3.1:8b") == 8192 and config.context_window("unknown") == 128000


@pytest.mark.parametrize("value", ["llama=", "=8192", "llama=lots", "tiny=500"])
def test_config_bad_context_windows_are_named(env, value):
    env.setenv("MODEL_CONTEXT_WINDOWS", value)
    with pytest.raises(ConfigError, match="MODEL_CONTEXT_WINDOWS"):
        Config().validate()
