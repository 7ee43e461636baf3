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


# Names of documents that are not in the repository; a rationale is cited as docs/ARCHITECTURE.md's decision N.
OUTSIDE = re.compile(r"(?i:\.\./shared|\bseed \d{3}\b|\bdesign card\b)|\bDESIGN\b")
SKIPPED = {".git", ".venv", ".venv-llm", "node_modules", "artifacts", "instance", "__pycache__", ".data"}


def repository_texts() -> list[Path]:
    """The docs, .env.example, the deployment files and every Python file (docstrings and comments)."""
    named = [*DOCS, ROOT / ".env.example", ROOT / "Dockerfile", ROOT / "docker-compose.yml", ROOT / "Makefile",
             *(ROOT / "deploy").iterdir(), *(ROOT / "k8s").iterdir()]
    code = [path for path in ROOT.rglob("*.py") if not SKIPPED & set(path.relative_to(ROOT).parts)]
    return [path for path in named + code if path.is_file() and path != Path(__file__).resolve()]


def test_nothing_points_outside_the_repository():
    for path in repository_texts():
        found = OUTSIDE.search(path.read_text(errors="replace"))
        assert found is None, f"{path.relative_to(ROOT)} names {found.group(0)!r}, which is not in the repository"


def test_cited_decisions_exist():
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    decisions = architecture.split("## Decisions, and why", 1)[1].split("\n## ", 1)[0]
    numbers = {int(n) for n in re.findall(r"^(\d+)\. \*\*", decisions, re.MULTILINE)}
    for path in repository_texts():
        for cited in re.findall(r"ARCHITECTURE\.md decisions? (\d+)(?: and (\d+))?", path.read_text(errors="replace")):
            assert {int(n) for n in cited if n} <= numbers, f"{path.relative_to(ROOT)} cites decision {cited}"
