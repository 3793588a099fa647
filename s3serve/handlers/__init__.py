"""Operation name -> handler. A handler is the function named after the AWS operation
(PutObject -> put_object) in one of the operation-family modules."""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable
from types import ModuleType

from aiohttp import web

from .. import errors
from ..routing import DERIVED, TABLE
from . import bucket_config, buckets, listing, multipart, objects, policy
from .common import Context

Handler = Callable[[Context], Awaitable[web.StreamResponse]]

MODULES: tuple[ModuleType, ...] = (buckets, listing, objects, multipart, bucket_config, policy)
# Families most servers never see (browser form uploads, GetObjectAttributes, ACLs, the answers
# for features a bucket here never has) load on their first request: together they doubled the
# handlers' import time, and start-up (command to first answer) is held to 0.3 s.
LAZY_MODULES = ("post", "attributes", "acl", "unsupported")


def snake_case(operation: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", operation).lower()


def _lazy(operation: str, name: str) -> Handler:
    """``operation``'s handler, ``name`` in one of LAZY_MODULES, loaded on its first request."""

    async def load_and_handle(ctx: Context) -> web.StreamResponse:
        for module_name in LAZY_MODULES:
            handler = getattr(importlib.import_module(f"{__name__}.{module_name}"), name, None)
            if handler is not None:
                HANDLERS[operation] = handler
                return await handler(ctx)
        raise errors.not_implemented(operation)

    return load_and_handle


def _registry() -> dict[str, Handler]:
    operations = set(TABLE.values()) | DERIVED
    found: dict[str, Handler] = {}
    for operation in operations:
        name = snake_case(operation)  # once per operation: the regex is most of start-up's cost here
        for module in MODULES:
            handler = getattr(module, name, None)
            if handler is not None:
                found[operation] = handler
        if operation not in found:
            found[operation] = _lazy(operation, name)
    return found


HANDLERS = _registry()

