"""s3serve as an upstream cache in front of a second s3serve, both of this tree, for the
benchmark's s3serve-cache variants.

    python bench/cache_pair.py ROOT PORT REVALIDATE

The upstream starts first, on ROOT-upstream; then this process becomes the cache (exec), so the
upstream is the cache's child: the harness measures the two as one server (CPU, peak RSS: the
whole cost of a cached request) and stops them together (one process group).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.servers import free_port, wait_ready

UP_KEY, UP_SECRET = "bench-upstream", "bench-upstream-secret"


def main() -> None:
    root, port, revalidate = sys.argv[1], sys.argv[2], sys.argv[3]
    up_root = root.rstrip("/") + "-upstream"
    shutil.rmtree(up_root, ignore_errors=True)
    os.makedirs(up_root)
    up_port = free_port()
    python = sys.executable
    serve = [python, "-m", "s3serve", "serve"]
    upstream = subprocess.Popen([*serve, up_root, "--address", f"127.0.0.1:{up_port}", "--access-key", UP_KEY, "--secret-key", UP_SECRET])
    wait_ready(up_port, upstream, Path(os.devnull))
    os.execv(python, [
        *serve, root, "--address", f"127.0.0.1:{port}", "--access-key", "bench", "--secret-key", "bench-secret",
        "--upstream", f"http://127.0.0.1:{up_port}", "--upstream-access-key", UP_KEY, "--upstream-secret-key", UP_SECRET,
        "--cache-revalidate", revalidate,
    ])


if __name__ == "__main__":
    main()
