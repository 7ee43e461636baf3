"""nginx from the system (Debian's `nginx` package) in front of app instances, on free ports, with a
config generated from deploy/nginx.conf: for tests/test_topology_nginx.py and load_bench.py.

    proxy = Nginx(workdir, [5001, 5002], limits=False).start()
    ... proxy.base ...
    proxy.stop()   # by pid

Only what a machine needs differs from the deployed file: the upstream servers, the listen
address, file paths under `workdir`, an X-Upstream header naming the instance that answered,
and (limits=False, for a load test whose users all share 127.0.0.1) no per-address limits.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import free_port

SITE = ROOT / "deploy" / "nginx.conf"
MAIN = """{user}worker_processes 1;
worker_rlimit_nofile 65536;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    add_header X-Upstream $upstream_addr always;
{site}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def render(work: Path, port: int, upstream_ports: list[int], limits: bool = True) -> str:
    """The whole nginx.conf: deploy/nginx.conf's site inside a main block of local paths."""
    site = SITE.read_text()
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in upstream_ports)
    site, found = re.subn(r"^\s*server app:\d+;$", servers, site, flags=re.MULTILINE)
    assert found == 1, "deploy/nginx.conf no longer has one `server app:PORT;` line"
    site, found = re.subn(r"^\s*listen 80;$", f"    listen 127.0.0.1:{port};", site, flags=re.MULTILINE)
    assert found == 1, "deploy/nginx.conf no longer has one `listen 80;` line"
    if not limits:
        site = re.sub(r"^\s*limit_(conn|req) .*;$", "", site, flags=re.MULTILINE)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must write the temp paths under work
    return MAIN.format(user=user, work=work, site=site)


class Nginx:
    """One nginx master (and worker) on a free port, in the foreground, stopped by its pid."""

    def __init__(self, work: Path, upstream_ports: list[int], limits: bool = True) -> None:
        self.work, self.port = Path(work), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.conf = self.work / "nginx.conf"
        self.conf.write_text(render(self.work, self.port, upstream_ports, limits))
        self.process: subprocess.Popen | None = None

    def start(self, seconds: float = 15) -> Nginx:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self.process = subprocess.Popen([binary, "-c", str(self.conf), "-p", str(self.work), "-e",
                                         str(self.work / "error.log"), "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        import requests
        deadline = time.monotonic() + seconds
        while True:
            assert self.process.poll() is None, f"nginx exited: {self.log()}"
            try:
                requests.get(self.base + "/health/live", timeout=2)
                return self
            except requests.ConnectionError:
                assert time.monotonic() < deadline, f"nginx did not answer: {self.log()}"
                time.sleep(0.1)

    def log(self) -> str:
        path = self.work / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, seconds: float = 10) -> None:
        """SIGQUIT (graceful) by pid, then SIGKILL; nginx's master stops its workers itself."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=seconds)


def children(pid: int) -> list[int]:
    """A process's children (a gunicorn master's worker), from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []
