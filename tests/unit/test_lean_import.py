"""s3serve.lean_import: aiohttp imported without parsing the CA bundle, the environment untouched."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import os, ssl, sys
import s3serve.cli
import aiohttp.connector
print(repr(os.environ.get("SSL_CERT_FILE")))
print(aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"])
print(ssl.create_default_context().cert_store_stats()["x509_ca"])
"""


def _probe(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
    if env_value is not None:
        env["SSL_CERT_FILE"] = env_value
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


def _bundle() -> str:
    import ssl

    cafile = ssl.get_default_verify_paths().openssl_cafile
    for path in (os.environ.get("SSL_CERT_FILE"), cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if path and os.path.isfile(path) and os.path.getsize(path) > 0:
            return path
    pytest.fail("no CA bundle on this machine to test with")


def test_user_bundle_survives_and_applies_to_new_contexts() -> None:
    bundle = _bundle()
    value, aiohttp_cas, new_cas = _probe(bundle)
    assert value == repr(bundle)
    assert aiohttp_cas == "0"  # nothing parsed at import
    assert int(new_cas) > 0  # a context made afterwards loads the user's bundle


def test_unset_variable_stays_unset() -> None:
    value, aiohttp_cas, _ = _probe(None)
    assert value == "None"
    assert aiohttp_cas == "0"
