"""Sub-resources of S3 features that s3serve's buckets and objects never have, answered as S3
answers for a bucket or an object without them, so that clients that probe for them (backup tools,
inventory scanners, Terraform's aws provider) get S3's answers rather than a 501:

- Object Lock retention and legal hold: no bucket here has Object Lock (PutObjectLockConfiguration
  is refused, as S3 refuses it without versioning), so every call is S3's InvalidRequest for a
  bucket without it. S3 checks the bucket before the key, so a missing key gets the same answer.
- RestoreObject: S3 restores only archived objects (GLACIER, DEEP_ARCHIVE); any other is refused
  with InvalidObjectState. Nothing is archived here: an object stored with an archive class is
  readable as it is, and a restore of one answers 501 rather than pretend to restore it.
- Analytics, metrics, inventory and intelligent-tiering configurations: a bucket has none. Get and
  Delete of one answer NoSuchConfiguration; List answers an empty list. Put answers 501 (no handler).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .. import errors, s3xml
from .common import Context, check_version_id, xml_response
from .encryption import described_without_key

NO_OBJECT_LOCK = "Bucket is missing Object Lock Configuration"
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


# -- Object Lock ----------------------------------------------------------------------------------


async def get_object_retention(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    raise errors.InvalidRequest(NO_OBJECT_LOCK)


async def get_object_legal_hold(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    raise errors.InvalidRequest(NO_OBJECT_LOCK)


async def put_object_retention(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    body = await ctx.read_xml_body()
    # An empty body is S3's way to remove a retention; a body must be a Retention document.
    if body.strip():
        s3xml.parse(body, "Retention")
    raise errors.InvalidRequest(NO_OBJECT_LOCK)


async def put_object_legal_hold(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    s3xml.parse(await ctx.read_xml_body(), "LegalHold")
    raise errors.InvalidRequest(NO_OBJECT_LOCK)


# -- RestoreObject --------------------------------------------------------------------------------


async def restore_object(ctx: Context) -> web.StreamResponse:
    check_version_id(ctx.query)
    body = await ctx.read_xml_body()
    info = await described_without_key(ctx)  # its storage class, which takes no SSE-C key
    if body.strip():
        s3xml.parse(body, "RestoreRequest")
    if info.storage_class in ARCHIVE_CLASSES:
        raise errors.NotImplementedOp(
            f"RestoreObject of a {info.storage_class} object is not implemented by s3serve: nothing is "
            "archived here, the object can be read as it is."
        )
    raise errors.InvalidObjectState("Restore is not allowed for the object's current storage class")


# -- analytics, metrics, inventory, intelligent-tiering -------------------------------------------


@dataclass(frozen=True)
class Listing:
    """The List answer of one kind of configuration."""

    root: str
    token_first: bool = False  # ContinuationToken before IsTruncated (S3's order for inventory)

    def render(self, token: str | None) -> bytes:
        parts = ["<IsTruncated>false</IsTruncated>"]
        if token is not None:
            # S3 echoes the token the request began from.
            element = f"<ContinuationToken>{s3xml.escape(token)}</ContinuationToken>"
            parts.insert(0 if self.token_first else 1, element)
        return f'{s3xml.HEADER}<{self.root} xmlns="{s3xml.NS}">{"".join(parts)}</{self.root}>'.encode()


async def _no_configuration(ctx: Context) -> web.StreamResponse:
    raise errors.NoSuchConfiguration()


def _list(listing: Listing) -> Callable[[Context], Awaitable[web.StreamResponse]]:
    async def list_configurations(ctx: Context) -> web.StreamResponse:
        return xml_response(listing.render(ctx.query.get("continuation-token")))

    return list_configurations


get_bucket_analytics_configuration = delete_bucket_analytics_configuration = _no_configuration
get_bucket_metrics_configuration = delete_bucket_metrics_configuration = _no_configuration
get_bucket_inventory_configuration = delete_bucket_inventory_configuration = _no_configuration
get_bucket_intelligent_tiering_configuration = _no_configuration
delete_bucket_intelligent_tiering_configuration = _no_configuration

list_bucket_analytics_configurations = _list(Listing("ListBucketAnalyticsConfigurationResult"))
list_bucket_metrics_configurations = _list(Listing("ListMetricsConfigurationsResult"))
list_bucket_inventory_configurations = _list(Listing("ListInventoryConfigurationsResult", token_first=True))
list_bucket_intelligent_tiering_configurations = _list(
    Listing("ListBucketIntelligentTieringConfigurationsOutput")
)
