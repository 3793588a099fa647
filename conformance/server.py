"""Start and stop an s3serve process (or the vhost proxy) for the conformance run."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Process:
    """A child process with its output in a log file; ``stop`` ends only this process."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
            # S3SERVE_* variables would quietly change the server under test (root, domain, ...).
            env={**{k: v for k, v in os.environ.items() if not k.startswith("S3SERVE_")}, **(self.env or {})},
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def wait_http(url: str, proc: Process | None, timeout: float = 30.0) -> None:
    """Ready once ``url`` gives any HTTP response (s3serve answers an anonymous GET / with 403)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            code = proc.proc.returncode if proc.proc else "?"
            raise RuntimeError(f"{proc.name} exited with {code} before it was ready:\n{log_tail(proc.log)}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx if url.startswith("https") else None):
                return
        except urllib.error.HTTPError:
            return
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.1)
    tail = log_tail(proc.log) if proc else ""
    raise RuntimeError(f"no HTTP answer from {url} within {timeout}s ({last})\n{tail}")


class S3Serve(Process):
    def __init__(self, name: str, root: Path, port: int, access_key: str, secret_key: str,
                 extra: list[str], log: Path) -> None:
        self.port = port
        self.tls = "--tls-self-signed" in extra
        argv = [sys.executable, "-m", "s3serve", "serve", str(root), "--address", f"127.0.0.1:{port}",
                "--access-key", access_key, "--secret-key", secret_key, *extra]
        super().__init__(name, argv, log)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start_and_wait(self) -> None:
        self.start()
        try:
            wait_http(self.url + "/", self)
        except Exception:
            self.stop()
            raise


class VhostProxy(Process):
    def __init__(self, target_port: int, domain: str, log: Path, request_log: Path) -> None:
        self.port = free_port()
        self.request_log = request_log
        argv = [sys.executable, "-m", "conformance.vhost_proxy", "--listen", f"127.0.0.1:{self.port}",
                "--target", f"127.0.0.1:{target_port}", "--domain", domain, "--log", str(request_log)]
        super().__init__("vhost proxy", argv, log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_and_wait(self) -> None:
        self.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"vhost proxy exited:\n{log_tail(self.log)}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("vhost proxy did not start listening")
