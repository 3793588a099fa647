"""Operation name -> handler. A handler is the function named after the AWS operation
(PutObject -> put_object) in one of the operation-family modules."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from types import ModuleType

from aiohttp import web

from ..routing import DERIVED, TABLE
from . import acl, attributes, bucket_config, buckets, listing, multipart, objects, post, unsupported
from .common import Context

Handler = Callable[[Context], Awaitable[web.StreamResponse]]

MODULES: tuple[ModuleType, ...] = (
    buckets, listing, objects, attributes, multipart, bucket_config, post, acl, unsupported
)


def snake_case(operation: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", operation).lower()


def _registry() -> dict[str, Handler]:
    operations = set(TABLE.values()) | DERIVED
    found: dict[str, Handler] = {}
    for operation in operations:
        for module in MODULES:
            handler = getattr(module, snake_case(operation), None)
            if handler is not None:
                found[operation] = handler
    return found


HANDLERS = _registry()
