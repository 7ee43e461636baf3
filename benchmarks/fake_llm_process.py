"""The fake model server in its own process, so its work does not disturb what a benchmark measures.

    url, process = start_fake_llm(reply="Hi", first_token_delay=0.2)
    ...
    stop_process(process)

Run as a script it starts a FakeLLM with the JSON settings given as its argument, prints its
port, and serves until its standard input closes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_fake_llm(**settings) -> tuple[str, subprocess.Popen]:
    process = subprocess.Popen([sys.executable, __file__, json.dumps(settings)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, cwd=ROOT)
    port = int(process.stdout.readline())
    return f"http://127.0.0.1:{port}/v1", process


def stop_process(process: subprocess.Popen, seconds: float = 20) -> None:
    """Terminate by process id, then kill if it does not go."""
    if process.stdin:
        process.stdin.close()
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=seconds)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_llm import FakeLLM
    fake = FakeLLM(**json.loads(sys.argv[1])).start()
    print(fake.port, flush=True)
    sys.stdin.read()
    fake.stop()
