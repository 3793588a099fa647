"""Run real third-party S3 clients against s3serve and print what works.

    .venv/bin/python -m conformance.run                 # all clients against a fresh s3serve
    .venv/bin/python -m conformance.run --only awscli,rclone
    .venv/bin/python -m conformance.run --markdown      # compatibility table from the last run

By default three s3serve processes are started on free loopback ports, each on a fresh temporary
root: plain http (path style), ``--tls-self-signed`` (https) and ``--domain localhost`` (virtual-host
style, reached through ``conformance.vhost_proxy``), plus ``--workers 2`` for a multi-process pass. To run the same suite against another S3
endpoint instead, set ``S3_ENDPOINT`` (and ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``, optionally
``S3_REGION``, ``S3_HTTPS_ENDPOINT``, ``S3_VHOST_DOMAIN``); steps that need what is not given skip.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from conformance.clients.common import trim
from conformance.server import REPO, S3Serve, VhostProxy, free_port

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PY = sys.executable

# name -> argv; each writes JSON lines to $CONF_RESULTS (see clients/common.py and clients/js/).
CLIENTS: dict[str, list[str]] = {
    "awscli": [PY, "-m", "conformance.clients.awscli"],
    "boto3": [PY, "-m", "conformance.clients.boto3_suite"],
    "s3fs-fuse": [PY, "-m", "conformance.clients.s3fs_fuse"],
    "rclone": [PY, "-m", "conformance.clients.rclone"],
    "s3cmd": [PY, "-m", "conformance.clients.s3cmd"],
    "fsspec-s3fs": [PY, "-m", "conformance.clients.fsspec_s3fs"],
    "minio-py": [PY, "-m", "conformance.clients.minio_py"],
    "js-sdk-v3": ["node", "--no-warnings", str(HERE / "clients" / "js" / "sdk_v3.mjs")],
    "minio-js": ["node", "--no-warnings", str(HERE / "clients" / "js" / "minio_js.mjs")],
    "pyarrow": [PY, "-m", "conformance.clients.pyarrow_s3"],
    "restic": [PY, "-m", "conformance.clients.restic"],
    "object_store": [PY, "-m", "conformance.clients.object_store"],
    "curl_sigv4": [PY, "-m", "conformance.clients.curl_sigv4"],
    "aws_crt": [PY, "-m", "conformance.clients.aws_crt"],
    "go_sdk_v2": [PY, "-m", "conformance.clients.go_sdk_v2"],
}
CLIENT_TIMEOUT = 900.0


class Run:
    def __init__(self, keep: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="s3serve-conformance-"))
        self.keep = keep
        self.records: list[dict[str, object]] = []
        self.versions: dict[str, str] = {}
        self.servers: list[S3Serve | VhostProxy] = []
        self.env: dict[str, str] = {}
        self.describe = ""

    def record(self, client: str, step: str, result: str, detail: str = "") -> None:
        self.records.append({"client": client, "step": step, "result": result, "detail": trim(detail), "seconds": 0})
        print(f"[{client}] {'ok  ' if result == 'pass' else 'FAIL'} {step}", file=sys.stderr, flush=True)

    # -- endpoints ---------------------------------------------------------------------------
    def start_s3serve(self, cache: bool = False) -> None:
        """With ``cache``, every server is an upstream cache (--upstream) in front of one more
        s3serve, with credentials of its own: the clients' buckets live there, and the four
        caches (http, https, vhost, workers) share them, as several caches of one S3 would."""
        access = "conformance"
        secret = secrets.token_hex(16)
        OUT.mkdir(exist_ok=True)
        through: list[str] = []

        def start(name: str, extra: list[str], keys: tuple[str, str] = (access, secret)) -> S3Serve | None:
            root = self.tmp / f"root-{name}"
            root.mkdir()
            log = OUT / f"server-{name}.log"
            log.write_text("")
            srv = S3Serve(name, root, free_port(), *keys, extra + through, log)
            try:
                srv.start_and_wait()
            except Exception as e:  # noqa: BLE001 - reported as a failed step, the run goes on
                self.record("s3serve", f"start ({name}: {' '.join(extra) or 'path style'})", "fail", str(e))
                return None
            self.record("s3serve", f"start ({name}: {' '.join(extra) or 'path style'})", "pass")
            self.servers.append(srv)
            return srv

        prefix = ""
        if cache:
            prefix, up_keys = "cache-", ("upstream", secrets.token_hex(16))
            # Over https, as a real S3 is reached: what needs TLS end to end (SSE-C keys) works through.
            upstream = start("upstream", ["--tls-self-signed"], up_keys)
            if upstream is None:
                return
            up_ca = self.tmp / "root-upstream" / ".s3serve" / "tls" / "cert.pem"
            through = ["--upstream", upstream.url, "--upstream-access-key", up_keys[0], "--upstream-secret-key", up_keys[1],
                       "--upstream-ca", str(up_ca)]  # fmt: skip
        http = start(prefix + "http", [])
        tls = start(prefix + "https", ["--tls-self-signed"])
        vhost = start(prefix + "vhost", ["--domain", "localhost"])
        # Several processes on one root (SO_REUSEPORT): multipart parts land on different workers.
        workers = start(prefix + "workers", ["--workers", "2"])
        self.env = {
            "CONF_ENDPOINT": http.url if http else "",
            "CONF_ACCESS_KEY": access,
            "CONF_SECRET_KEY": secret,
            "CONF_REGION": "us-east-1",
            "CONF_HTTPS_ENDPOINT": tls.url if tls else "",
            "CONF_WORKERS_ENDPOINT": workers.url if workers else "",
        }
        if tls:
            # --tls-self-signed keeps its certificate under the root: clients can really verify it.
            cert = self.tmp / f"root-{prefix}https" / ".s3serve" / "tls" / "cert.pem"
            if cert.exists():
                self.env["CONF_CA_BUNDLE"] = str(cert)
        if vhost:
            self.start_proxy(vhost.port, "localhost")
        self.describe = (
            "s3serve caches (--upstream) in front of another s3serve" if cache else "s3serve (fresh temporary roots)"
        )

    def start_proxy(self, port: int, domain: str) -> None:
        proxy = VhostProxy(port, domain, OUT / "vhost-proxy.log", self.tmp / "vhost-requests.log")
        try:
            proxy.start_and_wait()
        except Exception as e:  # noqa: BLE001
            self.record("s3serve", "start vhost proxy", "fail", str(e))
            return
        self.servers.append(proxy)
        self.env.update({
            "CONF_VHOST_ENDPOINT": f"http://{domain}:{port}",
            "CONF_VHOST_DOMAIN": domain,
            "CONF_VHOST_PROXY": proxy.url,
            "CONF_VHOST_PROXY_LOG": str(proxy.request_log),
        })

    def use_external(self) -> None:
        url = os.environ["S3_ENDPOINT"].rstrip("/")
        self.env = {
            "CONF_ENDPOINT": url,
            "CONF_ACCESS_KEY": os.environ.get("S3_ACCESS_KEY", "test"),
            "CONF_SECRET_KEY": os.environ.get("S3_SECRET_KEY", "test"),
            "CONF_REGION": os.environ.get("S3_REGION", "us-east-1"),
            "CONF_HTTPS_ENDPOINT": os.environ.get("S3_HTTPS_ENDPOINT", ""),
            "CONF_WORKERS_ENDPOINT": "",
        }
        domain = os.environ.get("S3_VHOST_DOMAIN", "")
        parts = urlsplit(url)
        if domain and parts.hostname in ("127.0.0.1", "localhost"):
            self.start_proxy(parts.port or 80, domain)
        self.describe = f"external endpoint {url}"

    def check_server_logs(self) -> None:
        """A client can pass while the server logged a traceback (say, a 500 that a retry hid):
        that is a failure too."""
        for srv in self.servers:
            if not isinstance(srv, S3Serve):
                continue
            lines = srv.log.read_text(errors="replace").splitlines()
            bad = [i for i, line in enumerate(lines) if "Traceback" in line or " ERROR " in line or " CRITICAL " in line]
            detail = "\n".join(lines[bad[0]:bad[0] + 30]) if bad else ""
            self.record("s3serve", f"no errors in the {srv.name} server log", "fail" if bad else "pass",
                        f"{len(bad)} error line(s) in {srv.log}, first:\n{detail}" if bad else "")

    def unmount_leftovers(self) -> None:
        """A client killed mid-run (s3fs-fuse) can leave a FUSE mount under the temp dir."""
        try:
            mounts = Path("/proc/mounts").read_text().splitlines()
        except OSError:
            return
        for line in mounts:
            point = line.split()[1] if len(line.split()) > 1 else ""
            if point.startswith(str(self.tmp)):
                subprocess.run(["fusermount", "-u", "-z", point], check=False, capture_output=True, timeout=30)

    def stop(self) -> None:
        self.unmount_leftovers()
        for s in reversed(self.servers):
            s.stop()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- clients -------------------------------------------------------------------------------
    def run_client(self, name: str, argv: list[str]) -> None:
        workdir = self.tmp / f"work-{name}"
        workdir.mkdir()
        results = self.tmp / f"results-{name}.jsonl"
        # A developer's AWS_* settings (profile, endpoint, CA bundle: rclone refuses to start when
        # AWS_CA_BUNDLE is set) must not steer the clients away from the server under test.
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env = {
            **base,
            **self.env,
            "CONF_WORKDIR": str(workdir),
            "CONF_RESULTS": str(results),
            # Unique per run, so that an external endpoint that keeps state is not confused.
            "CONF_BUCKET_PREFIX": f"conf{secrets.token_hex(3)}-",
            "PYTHONPATH": str(REPO),
            "PYTHONWARNINGS": "ignore",
        }
        print(f"== {name}", file=sys.stderr, flush=True)
        start = time.monotonic()
        tail: collections.deque[str] = collections.deque(maxlen=40)
        try:
            proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, errors="replace")
        except OSError as e:
            self.record(name, "client starts", "fail", f"{argv[0]}: {e}")
            return

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write(line)
                tail.append(line.rstrip("\n"))

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            rc = proc.wait(CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            self.record(name, "client finishes in time", "fail", f"killed after {CLIENT_TIMEOUT}s\n" + "\n".join(tail))
        t.join(5)
        got = []
        if results.exists():
            for line in results.read_text().splitlines():
                r = json.loads(line)
                if "version" in r:
                    self.versions[name] = str(r["version"])
                else:
                    got.append(r)
        self.records += got
        if rc != 0 or not got:
            self.record(name, "client process exits cleanly", "fail",
                        f"exit code {rc} after {time.monotonic() - start:.0f}s\n" + "\n".join(tail))
        # Leave the space for the next client: the workdirs hold hundreds of MiB.
        self.unmount_leftovers()
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(records: list[dict[str, object]]) -> tuple[int, int, int]:
    w1 = max([len("client")] + [len(str(r["client"])) for r in records])
    w2 = max([len("step")] + [len(str(r["step"])) for r in records])
    print(f"{'client':<{w1}} | {'step':<{w2}} | result")
    print(f"{'-' * w1}-+-{'-' * w2}-+-------")
    for r in records:
        print(f"{r['client']!s:<{w1}} | {r['step']!s:<{w2}} | {r['result']}")
    failed = [r for r in records if r["result"] == "fail"]
    if failed:
        print("\nFailures:")
        for r in failed:
            print(f"\n--- {r['client']} | {r['step']}")
            lines = str(r["detail"]).splitlines()
            print("\n".join("    " + x for x in lines[:25]) + ("\n    [...]" if len(lines) > 25 else ""))
    counts = collections.Counter(str(r["result"]) for r in records)
    return counts["pass"], counts["fail"], counts["skip"]


def markdown(data: dict[str, object]) -> str:
    records = data["results"]
    versions = data.get("versions", {})
    assert isinstance(records, list) and isinstance(versions, dict)
    by_client: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for r in records:
        by_client[str(r["client"])].append(r)
    lines = [
        f"Conformance run of {data.get('date', '?')} against {data.get('endpoint', '?')}.",
        "",
        "| Client | Version | Passed | Failed | Skipped | Failing steps |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for client, rs in by_client.items():
        c = collections.Counter(str(r["result"]) for r in rs)
        failing = "; ".join(str(r["step"]) for r in rs if r["result"] == "fail") or "-"
        version = str(versions.get(client, "")).replace("|", "/") or "-"
        lines.append(f"| {client} | {version} | {c['pass']} | {c['fail']} | {c['skip']} | {failing} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated clients to run: " + ",".join(CLIENTS))
    ap.add_argument("--skip", default="", help="comma-separated clients not to run")
    ap.add_argument("--markdown", action="store_true", help="print the compatibility table of the last run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary roots and work dirs")
    ap.add_argument("--cache", action="store_true", help="run against s3serve upstream caches in front of another s3serve")
    args = ap.parse_args()
    results_path = OUT / ("results-cache.json" if args.cache else "results.json")
    if args.markdown:
        if not results_path.exists():
            print(f"{results_path}: no results yet; run the suite first", file=sys.stderr)
            return 2
        print(markdown(json.loads(results_path.read_text())))
        return 0
    names = args.only.split(",") if args.only else list(CLIENTS)
    unknown = [n for n in names + [s for s in args.skip.split(",") if s] if n not in CLIENTS]
    if unknown:
        ap.error(f"unknown client(s) {unknown}; known: {', '.join(CLIENTS)}")
    names = [n for n in names if n not in args.skip.split(",")]

    OUT.mkdir(exist_ok=True)
    run = Run(args.keep)
    started = time.time()
    try:
        if os.environ.get("S3_ENDPOINT"):
            run.use_external()
        else:
            run.start_s3serve(cache=args.cache)
        for name in names:
            if not run.env.get("CONF_ENDPOINT"):
                run.record(name, "client runs", "fail", "not run: the server under test did not start")
                continue
            run.run_client(name, CLIENTS[name])
        run.check_server_logs()
    finally:
        run.stop()
    if args.keep:
        print(f"kept {run.tmp}", file=sys.stderr)
    print()
    passed, failed, skipped = print_table(run.records)
    data = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "endpoint": run.describe,
        "seconds": round(time.time() - started),
        "versions": run.versions,
        "results": run.records,
    }
    results_path.write_text(json.dumps(data, indent=1))
    print(f"\n(results in {results_path.relative_to(REPO)}, {data['seconds']}s)")
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
