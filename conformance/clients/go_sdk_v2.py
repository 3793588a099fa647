"""The AWS SDK for Go v2 (service/s3, feature/s3/manager, the presign client; what Terraform's S3
backend, Velero and many Go services use): its own SigV4 signer on net/http, its own checksum
middleware (a header over http, an aws-chunked body with a trailer over https), the transfer
manager's parallel multipart Uploader and ranged Downloader.

Debian's golang-github-aws-aws-sdk-go-v2-dev (SDK 1.17.1: service/s3 1.29.1, manager 1.11.37)
is built offline in GOPATH mode with Debian's Go into conformance/out/go_sdk_v2/ (the build cache
there too, so a second run only relinks, if that). The Go program (clients/go_sdk_v2/) runs one
workflow per server and prints a JSON line per step, recorded here as this client's steps.

The SDK client is built from ``s3.Options`` alone: static credentials, a custom endpoint
resolver, no shared config or credential files, no proxy from the environment, no retries; the
process also gets AWS_EC2_METADATA_DISABLED=true. Nothing but the loopback servers is contacted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from conformance.clients.common import Endpoint, Recorder, Skip, StepFailed, expect, run, trim

ep = Endpoint.from_env()
rec = Recorder("go_sdk_v2")
W = ep.workdir
HERE = Path(__file__).resolve().parent
SRC = HERE / "go_sdk_v2"
OUT = HERE.parent / "out" / "go_sdk_v2"  # git-ignored: the binary and Go's build cache
BIN = OUT / "go_sdk_v2"
GOPATH = Path("/usr/share/gocode")  # Debian's golang-*-dev packages
SDK = GOPATH / "src" / "github.com" / "aws" / "aws-sdk-go-v2"
SMITHY = GOPATH / "src" / "github.com" / "aws" / "smithy-go"
SUITE_TIMEOUT = 600.0

# GOPATH mode against Debian's sources: no module proxy, no network, no go.mod to resolve.
GO_ENV = {
    "GO111MODULE": "off",
    "GOPATH": str(GOPATH),
    "GOCACHE": str(OUT / "cache"),
    "GOFLAGS": "",
    "GOPROXY": "off",
    "GOENV": "off",
    "GOTOOLCHAIN": "local",
    "CGO_ENABLED": "0",
}


def module_version(path: Path) -> str:
    try:
        text = (path / "go_module_metadata.go").read_text()
    except OSError:
        return "?"
    m = re.search(r'goModuleVersion = "([^"]+)"', text)
    return m.group(1) if m else "?"


def go_version() -> str:
    try:
        r = subprocess.run(["go", "version"], capture_output=True, text=True, timeout=60, env={**os.environ, **GO_ENV})
    except OSError:
        return "no go"
    words = r.stdout.split()
    return words[2] if len(words) > 2 else "?"


rec.version(
    f"aws-sdk-go-v2 {module_version(SDK / 'aws')} (service/s3 {module_version(SDK / 'service' / 's3')}, "
    f"feature/s3/manager {module_version(SDK / 'feature' / 's3' / 'manager')}, smithy-go {module_version(SMITHY)}) "
    f"/ {go_version()}"
)

BUILD = "go build (GOPATH mode against Debian's SDK sources, offline)"


@rec.step(BUILD)
def _() -> None:
    expect(SDK.is_dir(), f"{SDK} missing: run conformance/install.sh (golang-github-aws-aws-sdk-go-v2-dev)")
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    run(["go", "build", "-o", BIN, "."], env=GO_ENV, cwd=SRC, timeout=600)
    print(f"[go_sdk_v2] go build took {time.monotonic() - start:.1f}s", flush=True)
    expect(BIN.is_file(), f"no binary at {BIN}")


def client_env() -> dict[str, str]:
    """No proxy, no shared config or credentials, no instance metadata: only the endpoint given."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("AWS_")}
    env.update({
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "CONF_ACCESS_KEY": ep.access_key,
        "CONF_SECRET_KEY": ep.secret_key,
    })
    return env


def run_suite(suite: str, endpoint: str, bucket: str, *extra: str) -> None:
    """Run one workflow of the Go program and record each JSON line it prints as a step."""
    name = f"{suite} workflow runs to the end"
    if BUILD in rec.failed:
        rec.record(name, "fail", f"not run: depends on failed step(s) {BUILD}")
        return
    argv = [str(BIN), "-suite", suite, "-endpoint", endpoint, "-bucket", bucket, "-region", ep.region,
            "-workdir", str(W), *extra]
    stderr_path = W / f"go-{suite}.stderr"
    start = time.monotonic()
    steps = 0
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(argv, env=client_env(), stdout=subprocess.PIPE, stderr=stderr,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
        timer = threading.Timer(SUITE_TIMEOUT, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    print(f"[go_sdk_v2] {line}", flush=True)
                    continue
                steps += 1
                rec.record(str(r["step"]), str(r["result"]), str(r.get("detail", "")), float(r.get("seconds", 0)))
            rc = proc.wait()
        finally:
            timer.cancel()
    err = stderr_path.read_text(errors="replace")
    if rc != 0 or steps == 0:
        rec.record(name, "fail", f"exit code {rc} after {time.monotonic() - start:.0f}s ({steps} steps): "
                                 f"{' '.join(argv)}\n{trim(err)}")


# The main workflow: path style over plain http.
run_suite("main", ep.url, ep.bucket("go-sdk-v2"))

if ep.https_url:
    run_suite("https", ep.https_url, ep.bucket("go-sdk-v2-tls"), "-ca-file", ep.ca_bundle)
else:
    rec.record("https workflow", "skip", "no https endpoint")

VB = ep.bucket("go-sdk-v2-vhost")
if ep.vhost_url and ep.vhost_proxy:
    run_suite("vhost", ep.vhost_url, VB, "-path-style=false", "-proxy", ep.vhost_proxy)

    @rec.step("virtual-host style: the proxy forwarded requests with Host <bucket>.<domain>", needs=[BUILD])
    def _() -> None:
        log = os.environ.get("CONF_VHOST_PROXY_LOG", "")
        if not log or not Path(log).exists():
            raise Skip("no proxy request log")
        hosts = {line.split(" ", 1)[0].rsplit(":", 1)[0] for line in Path(log).read_text().splitlines() if line}
        want = f"{VB}.{ep.vhost_domain}"
        if want not in hosts:
            raise StepFailed(f"no request with Host {want} in {log}: saw {sorted(hosts)[:10]}")
else:
    rec.record("virtual-host style workflow", "skip", "no virtual-host endpoint")

if os.environ.get("CONF_WORKERS_ENDPOINT"):
    run_suite("workers", os.environ["CONF_WORKERS_ENDPOINT"].rstrip("/"), ep.bucket("go-sdk-v2-workers"))
else:
    rec.record("--workers 2 workflow", "skip", "no --workers endpoint")
