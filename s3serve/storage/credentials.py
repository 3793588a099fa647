"""Credentials for the upstream S3: fixed keys, or an AWS profile resolved by botocore.

With a profile, botocore's credential chain finds them as every AWS tool does (the shared
credentials and config files, credential_process, SSO, assume-role, web identity, container and
instance credentials) and renews temporary ones before they expire. botocore is the library built
for exactly that; it is only needed with --upstream-profile (``pip install botocore``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str
    token: str | None = None


class Source(Protocol):
    """Where an upstream's keys come from."""

    async def keys(self) -> Keys: ...


class FixedKeys:
    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    async def keys(self) -> Keys:
        return self._keys


class ProfileKeys:
    """The keys of an AWS profile, renewed as botocore sees fit; a renewal (which may run a
    program or ask a metadata endpoint) happens in a worker thread, never on the event loop."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials  # botocore Credentials or RefreshableCredentials
        self._current: Keys | None = None
        self._renewing: asyncio.Lock | None = None

    async def keys(self) -> Keys:
        due = getattr(self._credentials, "refresh_needed", None)
        if self._current is not None and not (due is not None and due()):
            return self._current
        if self._renewing is None:
            self._renewing = asyncio.Lock()
        async with self._renewing:
            if self._current is None or (due is not None and due()):
                frozen = await asyncio.to_thread(self._credentials.get_frozen_credentials)
                self._current = Keys(frozen.access_key, frozen.secret_key, frozen.token or None)
        return self._current


def from_profile(profile: str) -> tuple[ProfileKeys, str | None]:
    """The keys of ``profile`` and its region (None when it names none); ValueError when botocore
    is missing or finds no credentials."""
    try:
        import botocore.exceptions
        import botocore.session
    except ImportError:
        raise ValueError("--upstream-profile needs botocore (pip install botocore)") from None
    try:
        session = botocore.session.Session(profile=profile)
        credentials = session.get_credentials()
        region = session.get_config_variable("region")
    except botocore.exceptions.BotoCoreError as exc:
        raise ValueError(f"AWS profile {profile!r}: {exc}") from None
    if credentials is None:
        raise ValueError(f"AWS profile {profile!r}: no credentials found")
    return ProfileKeys(credentials), region
