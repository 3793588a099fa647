#!/usr/bin/env bash
# Installs what `make bench` runs beside s3serve; safe to run again (each step is skipped when done).
#   - nginx (the sendfile/dav ceiling) and wrk (the C load generator) from Debian, when root
#   - moto[server] into its own venv at bench/.peers/venv (kept apart from the project's venv)
#   - s3rver from npm into bench/peers/node_modules, from the committed package.json / lock
# Nothing here is needed by s3serve itself. Missing tools only make bench/run.py skip that server.
set -euo pipefail
cd "$(dirname "$0")"

MOTO_VERSION="5.2.5"
PYTHON="${PYTHON:-python3}"

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bench/install.sh: apt-get install ${need_apt[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
        # Debian starts the packaged nginx service; the benchmark runs its own instance instead.
        if command -v service >/dev/null 2>&1; then service nginx stop >/dev/null 2>&1 || true; fi
    else
        echo "bench/install.sh: not root or no apt-get; install ${need_apt[*]} yourself (those servers are skipped)" >&2
    fi
fi

if [ ! -x .peers/venv/bin/moto_server ] || ! .peers/venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    echo "bench/install.sh: moto[server]==$MOTO_VERSION into bench/.peers/venv"
    "$PYTHON" -m venv .peers/venv
    .peers/venv/bin/pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

if command -v npm >/dev/null 2>&1; then
    if [ ! -f peers/node_modules/s3rver/bin/s3rver.js ]; then
        echo "bench/install.sh: s3rver into bench/peers/node_modules"
        (cd peers && npm ci --no-audit --no-fund --loglevel=error)
    fi
else
    echo "bench/install.sh: npm not found; s3rver is skipped" >&2
fi
# s3serve is installed editable, which pip does not byte-compile; with PYTHONDONTWRITEBYTECODE=1
# every start would compile it again (~60 ms of the start-up scenario). bench/run.py also does this.
"${PROJECT_PYTHON:-../.venv/bin/python}" -m compileall -q ../s3serve || echo "bench/install.sh: could not byte-compile s3serve" >&2
echo "bench/install.sh: ok"
