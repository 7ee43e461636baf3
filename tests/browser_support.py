"""Browser tests' parts: the app as `python app.py` on a free port (restartable, stopped by pid),
Debian's chromium driven by Playwright, and a page that records what must never happen
(JavaScript errors, alert dialogs, script that an XSS payload would run)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


class LiveApp:
    """`python app.py` with its own instance folder; restart() keeps the port and the data."""

    def __init__(self, instance: Path, home: Path, **settings) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {"PATH": os.environ["PATH"], "HOME": str(home), "HOST": "127.0.0.1", "PORT": str(self.port),
                    "INSTANCE_PATH": str(instance), "MAX_TOKENS": "4096", "REPLY_TOKENS": "512", "AUTO_TITLE": "false",
                    **{name: str(value) for name, value in settings.items()}}
        self.process: subprocess.Popen | None = None

    def start(self) -> LiveApp:
        self.process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.base + "/health", timeout=1)
                return self
            except requests.ConnectionError:
                assert self.process.poll() is None and time.monotonic() < deadline, "the app did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.start()


def launch_chromium(playwright):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


class Watched:
    """A Playwright page plus what went wrong on it."""

    def __init__(self, page) -> None:
        self.page, self.errors, self.dialogs = page, [], []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("dialog", self._dialog)
        self.answers: list[str | None] = []  # what prompt()/confirm() dialogs answer, in order

    def _dialog(self, dialog) -> None:
        self.dialogs.append((dialog.type, dialog.message))
        answer = self.answers.pop(0) if self.answers else None
        if dialog.type == "alert" or answer is None:
            dialog.dismiss()
        else:
            dialog.accept(answer)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def serious_accessibility_violations(self) -> list[dict]:
        """axe-core (from npm) on the page as it is: violations of impact serious or critical."""
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate("() => axe.run(document, {runOnly: {type: 'tag', values: "
                                    "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})")
        return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                 "targets": [node["target"] for node in v["nodes"]][:5]}
                for v in result["violations"] if v["impact"] in ("serious", "critical")]

