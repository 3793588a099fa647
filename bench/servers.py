"""The servers under test: how to start each, wait for it, measure it through /proc, and stop it.

Every server is a child process on 127.0.0.1 pinned to its own core (when there are several), so
its CPU time and peak RSS can be read from /proc without disturbing it. Peers and ceilings that are
not installed are skipped with the reason, never faked.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.client import Endpoint

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
MOTO_SERVER = BENCH / ".peers" / "venv" / "bin" / "moto_server"
S3RVER_JS = BENCH / "peers" / "node_modules" / "s3rver" / "bin" / "s3rver.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- /proc ----------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """utime+stime of the whole live tree plus what its reaped children used (cutime+cstime)."""
    total = 0
    for pid in process_tree(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        # Fields after the name: state=0 ... utime=11 stime=12 cutime=13 cstime=14.
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / CLK_TCK


def cpu_by_process(root: int) -> dict[int, float]:
    """utime+stime (seconds) of each live process of the tree: how work spreads over workers."""
    out = {}
    for pid in process_tree(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        out[pid] = (int(f[11]) + int(f[12])) / CLK_TCK
    return out


def run_time_s(root: int) -> float:
    """Time on a CPU of every thread of the live tree, from schedstat (ns; not 10 ms ticks)."""
    total = 0
    for pid in process_tree(root):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def peak_rss_kib(root: int) -> int:
    """Sum of VmHWM over the tree: the peak resident memory of each process since the last reset."""
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def reset_peak_rss(root: int) -> bool:
    """Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each scenario gets its own peak."""
    ok = True
    for pid in process_tree(root):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


# -- cores ----------------------------------------------------------------------------------------


def split_cores() -> tuple[set[int], set[int]]:
    """(client cores, server cores): disjoint when there are at least two cores."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return set(cores), set(cores)
    half = len(cores) // 2
    return set(cores[:half]), set(cores[half:])


# -- server definitions ---------------------------------------------------------------------------


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes] | None
    endpoint: Endpoint
    root: Path | None  # the data directory when files can be created in it directly (ROOT/bucket/key)
    startup_s: float
    workdir: Path
    log: Path
    startup_cpu_s: float | None = None  # CPU the server had used by its first answer

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # The process leads its own group (start_new_session): workers and node children go too.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@dataclass
class ServerSpec:
    name: str
    role: str  # "subject", "variant" (of the subject), "peer" or "ceiling"
    describe: str
    command: Callable[[Path, int, Path, int | None], list[str]]  # (data root, port, workdir, workers) -> argv
    access_key: str = "bench"
    secret_key: str = "bench-secret"
    s3: bool = True
    direct_disk: bool = False  # ROOT/bucket/key on disk is an object (s3serve, nginx)
    requires: list[Path] = field(default_factory=list)
    external_url: str | None = None
    workers: bool = False  # takes a number of worker processes (the `workers` scenario)

    def missing(self) -> str | None:
        for path in self.requires:
            if not Path(path).exists():
                return f"{path} not found (run bench/install.sh)"
        return None

    def start(self, data_dir: Path, server_cores: set[int], workers: int | None = None, fresh: bool = True) -> Running:
        """``fresh``: on an empty data root; otherwise on whatever the last start left there."""
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        log = workdir / "server.log"
        if self.external_url:
            ep = Endpoint(self.name, self.external_url, self.access_key, self.secret_key, s3=self.s3)
            return Running(self.name, None, ep, None, 0.0, workdir, log)
        root = data_dir / self.name
        if fresh:
            shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=not fresh)
        port = free_port()
        argv = self.command(root, port, workdir, workers)
        t0 = time.perf_counter()
        with log.open("wb") as logf:
            proc = subprocess.Popen(
                argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                start_new_session=True, env=_child_env(),
            )
        try:
            os.sched_setaffinity(proc.pid, server_cores)
        except OSError:
            pass
        ep = Endpoint(self.name, f"http://127.0.0.1:{port}", self.access_key, self.secret_key, s3=self.s3)
        running = Running(self.name, proc, ep, root if self.direct_disk else None, 0.0, workdir, log)
        try:
            wait_ready(port, proc, log)
        except BaseException:
            running.stop()
            raise
        running.startup_s = time.perf_counter() - t0
        running.startup_cpu_s = run_time_s(proc.pid)
        return running


def _child_env() -> dict[str, str]:
    # s3serve runs from the work tree whether or not it is pip-installed into the venv.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


class StartError(RuntimeError):
    pass


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Ready means any HTTP answer to GET / (s3serve answers anonymous requests with 403)."""
    deadline = time.perf_counter() + READY_TIMEOUT
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise StartError(f"exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.005)
        finally:
            conn.close()
    raise StartError(f"no HTTP answer within {READY_TIMEOUT:.0f}s")


def _s3serve(root: Path, port: int, workdir: Path, workers: int | None) -> list[str]:
    n = str(workers) if workers is not None else os.environ.get("BENCH_S3SERVE_WORKERS", "1")
    return [
        str(PROJECT_PYTHON), "-m", "s3serve", "serve", str(root), "--address", f"127.0.0.1:{port}",
        "--access-key", "bench", "--secret-key", "bench-secret", "--workers", n,
    ]


def _s3serve_nofsync(root: Path, port: int, workdir: Path, workers: int | None) -> list[str]:
    return _s3serve(root, port, workdir, workers) + ["--no-fsync"]


def _s3serve_cache(revalidate: str) -> Callable[[Path, int, Path, int | None], list[str]]:
    def command(root: Path, port: int, workdir: Path, workers: int | None) -> list[str]:
        return [str(PROJECT_PYTHON), str(BENCH / "cache_pair.py"), str(root), str(port), revalidate]

    return command


def _moto(root: Path, port: int, workdir: Path, workers: int | None) -> list[str]:
    return [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)]


def _s3rver(root: Path, port: int, workdir: Path, workers: int | None) -> list[str]:
    return ["node", str(S3RVER_JS), "-d", str(root), "-a", "127.0.0.1", "-p", str(port), "--silent"]


def _ceiling_aiohttp(root: Path, port: int, workdir: Path, workers: int | None) -> list[str]:
    return [str(PROJECT_PYTHON), str(BENCH / "ceiling_app.py"), "--port", str(port), "--workers", str(workers or 1)]


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    client_max_body_size 0;
    client_body_buffer_size 1m;
    # On the data filesystem, so a finished PUT is a rename like s3serve's.
    client_body_temp_path {root}/.nginx-tmp;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"""


def _nginx(root: Path, port: int, workdir: Path, workers: int | None) -> list[str]:
    user = "user root;" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workdir=workdir, root=root, port=port, user=user))
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]


def all_specs() -> dict[str, ServerSpec]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    specs = [
        ServerSpec("s3serve", "subject", "s3serve (this project), 1 worker", _s3serve, direct_disk=True,
                   requires=[PROJECT_PYTHON], workers=True),
        ServerSpec("s3serve-nofsync", "variant", "s3serve with --no-fsync, small objects only", _s3serve_nofsync,
                   direct_disk=True, requires=[PROJECT_PYTHON]),
        ServerSpec("s3serve-cache", "variant", "s3serve --upstream (a second s3serve, measured with it), every read revalidated",
                   _s3serve_cache("0"), requires=[PROJECT_PYTHON]),
        ServerSpec("s3serve-cache-30s", "variant", "the same with --cache-revalidate 30s, small objects only",
                   _s3serve_cache("30s"), requires=[PROJECT_PYTHON]),
        ServerSpec("moto", "peer", "moto_server (moto[server], Python/Werkzeug, in memory)", _moto,
                   requires=[MOTO_SERVER]),
        ServerSpec("s3rver", "peer", "s3rver (Node.js, on disk)", _s3rver, access_key="S3RVER",
                   secret_key="S3RVER", requires=[S3RVER_JS]),
        ServerSpec("nginx", "ceiling", "nginx, sendfile GET, dav PUT/DELETE, 1 worker", _nginx, s3=False,
                   direct_disk=True, requires=[Path(nginx)]),
        ServerSpec("aiohttp", "ceiling", "bare aiohttp app, fixed 4 KiB body", _ceiling_aiohttp, s3=False,
                   requires=[PROJECT_PYTHON], workers=True),
    ]
    out = {s.name: s for s in specs}
    # Point the same suite at any other S3 endpoint (not started, not measured through /proc).
    url = os.environ.get("S3_ENDPOINT")
    if url:
        check_loopback(url)
        out["external"] = ServerSpec(
            "external", "peer", f"external endpoint {url}", _moto,
            access_key=os.environ.get("S3_ACCESS_KEY", "bench"),
            secret_key=os.environ.get("S3_SECRET_KEY", "bench-secret"), external_url=url,
        )
    return out


def check_loopback(url: str) -> None:
    """A benchmark is load: it goes to this machine's loopback and nowhere else."""
    host = urlsplit(url).hostname or ""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost" or host.endswith(".localhost")
    if not ok:
        raise SystemExit(f"S3_ENDPOINT {url!r}: only loopback endpoints (127.0.0.0/8, ::1, localhost) are benchmarked")
