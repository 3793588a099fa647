#!/usr/bin/env bash
# Install the conformance suite's clients, skipping whatever is already there:
#   Debian: awscli (v2), s3fs (s3fs-fuse), rclone, s3cmd, restic, curl, node/npm, Go and the AWS SDK
#   for Go v2 sources (golang-go, golang-github-aws-aws-sdk-go-v2-dev: clients/go_sdk_v2.py builds
#   against them offline in GOPATH mode, as no Go module proxy is reachable)
#   PyPI into the project venv: the "conformance" extra of pyproject.toml (boto3, s3fs, minio, pyarrow,
#   obstore, polars, awscrt)
#   npm into conformance/clients/js/node_modules from the committed package-lock.json: the AWS SDK for
#   JavaScript v3 (client-s3, lib-storage, s3-presigned-post) and the MinIO JavaScript client (minio)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PY="${PY:-$REPO/.venv/bin/python}"

# --- Debian packages: one apt-get update, and only when something is missing --------------------
need=()
# Debian's awscli is v2; a pip-installed v1 may shadow it on PATH, so ask /usr/bin/aws itself.
if ! /usr/bin/aws --version 2>/dev/null | grep -q '^aws-cli/2'; then need+=(awscli); fi
command -v s3fs >/dev/null || need+=(s3fs)
command -v fusermount >/dev/null || command -v fusermount3 >/dev/null || need+=(fuse3)
command -v rclone >/dev/null || need+=(rclone)
command -v s3cmd >/dev/null || need+=(s3cmd)
command -v restic >/dev/null || need+=(restic)
command -v curl >/dev/null || need+=(curl)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/aws/aws-sdk-go-v2/feature/s3/manager ] || need+=(golang-github-aws-aws-sdk-go-v2-dev)
if ((${#need[@]})); then
    echo "install.sh: apt-get install ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
/usr/bin/aws --version | grep -q '^aws-cli/2' || { echo "install.sh: /usr/bin/aws is not aws-cli/2" >&2; exit 1; }

# --- Python clients into the project venv ------------------------------------------------------
if [ ! -x "$PY" ]; then
    echo "install.sh: no project venv at $PY (make creates it)" >&2
    exit 1
fi
if ! "$PY" -c "import boto3, s3fs, minio, pyarrow.fs, obstore, polars; from awscrt.s3 import S3ChecksumValidationMode" 2>/dev/null; then
    # The requirement list lives in pyproject.toml only (the "conformance" extra).
    mapfile -t reqs < <("$PY" - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["conformance"]))
EOF
)
    echo "install.sh: pip install ${reqs[*]}"
    "$PY" -m pip install -q "${reqs[@]}"
fi

# --- JavaScript SDK v3 and minio-js from the lock file ------------------------------------------
JS="$HERE/clients/js"
if [ ! -d "$JS/node_modules/@aws-sdk/client-s3" ] || [ ! -d "$JS/node_modules/@aws-sdk/lib-storage" ] \
    || [ ! -d "$JS/node_modules/@aws-sdk/s3-presigned-post" ] || [ ! -d "$JS/node_modules/minio" ] \
    || [ "$JS/package-lock.json" -nt "$JS/node_modules/.package-lock.json" ]; then
    echo "install.sh: npm ci in $JS"
    (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "install.sh: clients ready ($(/usr/bin/aws --version 2>&1 | cut -d' ' -f1), $(rclone version | head -1), $(s3cmd --version), $(s3fs --version 2>&1 | head -1 | cut -d' ' -f1-7), $(restic version | cut -d' ' -f1-2), pyarrow $("$PY" -c 'import pyarrow; print(pyarrow.__version__)'), $(go version | cut -d' ' -f3))"
