"""Every route the app registers is exercised by some test (fails when a new one has none)."""
import re
import tempfile
from pathlib import Path

import pytest

import config
from app import create_app

TESTS = Path(__file__).resolve().parent


def _routes():
    app = create_app(config.TestConfig(Path(tempfile.mkdtemp(prefix="routes-"))))
    return sorted({rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"})


def _tested_paths() -> str:
    return "\n".join(path.read_text() for path in TESTS.glob("test_*.py") if path.name != Path(__file__).name)


@pytest.mark.parametrize("rule", _routes())
def test_completeness_every_route_has_a_test(rule):
    """A test names the route's path, e.g. client.get("/load_conversation/...")."""
    prefix = re.split(r"<[^>]+>", rule)[0]
    assert re.search(r'["\']' + re.escape(prefix) + (r'["\'?]' if rule == "/" else ""), _tested_paths()), rule
