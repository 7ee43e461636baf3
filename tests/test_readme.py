"""README is the newcomer's way in: every setting has a row, every link inside the repository leads
somewhere, and nothing points outside it."""
import re
from pathlib import Path

import config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def settings() -> set[str]:
    return {name for name in vars(config.Config()) if name.isupper()}


def test_readme_has_a_row_for_every_setting():
    rows = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`", README, re.MULTILINE))
    assert settings() - rows == set(), "settings without a README row"


def test_env_example_names_every_setting():
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert settings() - named - {"INSTANCE_PATH"} == set(), "settings missing from .env.example"


def test_relative_links_in_readme_and_docs_resolve():
    for page in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            assert (page.parent / target).resolve().exists(), f"{page.name} links to missing {target}"


def test_nothing_points_outside_the_repository():
    for page in DOCS:
        text = page.read_text()
        assert "../shared" not in text and not re.search(r"\bseed \d{3}\b", text, re.IGNORECASE), page.name
