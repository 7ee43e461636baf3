"""Runtime and development dependencies stay apart: what the app imports is in requirements.txt,
which the Docker image installs alone; tests, benchmarks and tooling are in requirements-dev.txt."""
import ast
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_RUNTIME = {"tests", "benchmarks", "scripts", "node_modules", "docs", "artifacts", "instance"}


def pinned(name: str) -> dict[str, str]:
    """{normalised distribution name: version} of a requirements file (its own lines, not -r)."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            package, _, version = line.partition("==")
            found[_normal(re.sub(r"\[.*\]", "", package))] = version
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_modules() -> list[Path]:
    return [path for path in ROOT.rglob("*.py")
            if not ({part for part in path.relative_to(ROOT).parts} & NOT_RUNTIME) and ".venv" not in str(path)
            and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)]


def third_party_imports(path: Path) -> set[str]:
    """Top-level names imported anywhere in the module (also inside functions) that are neither the
    standard library nor the project's own packages."""
    own = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in own}


def test_every_package_the_app_imports_is_a_runtime_requirement():
    runtime = pinned("requirements.txt") | pinned("requirements-model.txt")  # the second: installed --no-deps
    providers = metadata.packages_distributions()
    missing = {}
    for path in runtime_modules():
        for name in third_party_imports(path):
            distributions = {_normal(d) for d in providers.get(name, [name])}
            if not distributions & runtime.keys():
                missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported by the app but not in requirements.txt: {missing}"


def test_development_requirements_extend_the_runtime_ones_without_overlap():
    dev_file = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev_file
    runtime, dev = pinned("requirements.txt"), pinned("requirements-dev.txt")
    assert not runtime.keys() & dev.keys(), "a package is in both files"
    assert all(version for version in {**runtime, **dev}.values()), "every requirement is pinned with =="
    assert {"pytest", "playwright", "mongomock", "hypothesis", "schemathesis"} <= dev.keys()
    assert not {"pytest", "playwright", "mongomock", "hypothesis", "schemathesis"} & runtime.keys()


def test_the_docker_image_installs_only_the_runtime_requirements():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and "requirements-dev.txt" not in dockerfile
    assert "--no-deps -r requirements-model.txt" in dockerfile  # the model's files, without PyTorch
