"""Import aiohttp without parsing a CA bundle.

On import, aiohttp builds its default client SSL contexts (``aiohttp.connector``), and OpenSSL 3
parses the whole CA bundle file (~140 certificates) for the verified one: 40-100 ms here, up to a
third of s3serve's start-up, for contexts the server never uses (it opens no TLS connections, and
a TLS client of its own would build its own context). So SSL_CERT_FILE names an empty file while
aiohttp is imported: that one context falls back to the CA directory, which OpenSSL reads lazily,
and the variable is restored at once, so every other context keeps the user's settings.
"""

from __future__ import annotations

import os
import sys


def import_aiohttp() -> None:
    if "aiohttp" in sys.modules:
        return
    previous = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = os.devnull
    try:
        import aiohttp  # noqa: F401
    finally:
        if previous is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = previous
