"""Run the end-to-end suite through the upstream cache: `make test-cache`.

Starts an s3serve as the upstream and a second one as its cache (`--upstream`), on free loopback
ports with fresh temporary roots, and points tests/e2e at the cache (S3SERVE_TEST_ENDPOINT, as for
any other S3). Every expectation the suite has of s3serve must then hold through a cache as well.
The tests that inspect the server's own folder or log skip themselves for an external endpoint;
the cache's own test modules (test_cache_*), which start servers of their own, are left out.
Fails when a test fails or when either server logged an error or a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.conftest import cache_pair  # noqa: E402

# The cache's own test modules (tests/e2e/test_cache_*.py) and the upstream client's.
OWN_SERVERS = (*sorted(str(p.relative_to(REPO)) for p in (REPO / "tests" / "e2e").glob("test_cache_*.py")), "tests/e2e/test_remote.py")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="s3serve-through-cache-") as tmp:
        with cache_pair(Path(tmp)) as (upstream, cache):
            env = {**os.environ, "S3SERVE_TEST_ENDPOINT": cache.endpoint}
            deselect = [arg for path in OWN_SERVERS for arg in ("--deselect", path)]
            tests = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e", *deselect],
                cwd=REPO, env=env, check=False,
            )
        bad = []
        for server in (upstream, cache):
            assert server.log_path is not None
            lines = server.log_path.read_text(errors="replace").splitlines()
            bad += [f"{server.log_path.name}: {line}" for line in lines if "Traceback" in line or " ERROR " in line]
        if bad:
            print("server log errors:\n" + "\n".join(bad[:20]), file=sys.stderr)
    return 1 if tests.returncode or bad else 0


if __name__ == "__main__":
    sys.exit(main())
