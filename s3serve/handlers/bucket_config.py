"""Bucket configuration sub-resources (tagging, CORS, policy, lifecycle, encryption, website,
versioning, ...) and CORS itself: the preflight (OPTIONS) and the headers of actual requests.

Every document is validated as S3 validates it, stored whole through the Backend and returned by
its Get in S3's namespace. Most sub-resources are kept, not acted upon (s3serve writes no access
logs, sends no notifications, replicates nothing, expires nothing): clients that read a bucket's
configuration get S3's answers, and README says what is enforced (CORS here; the bucket policy and
the public access block in handlers/policy.py).
"""

from __future__ import annotations

import base64
import datetime
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .. import cors, errors, s3xml
from ..routing import Route
from ..storage.base import Backend
from . import encryption
from .common import Context, validate_tags, xml_response

Handler = Callable[[Context], Awaitable[web.StreamResponse]]
Validator = Callable[[dict[str, Any], str], None]  # (document content, bucket name)

PREFLIGHT = "OptionsObject"
MAX_BUCKET_TAGS = 50
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def _malformed_unless(condition: object) -> None:
    if not condition:
        raise errors.MalformedXML()


def _only(content: Mapping[str, Any], *names: str) -> None:
    """S3 validates documents against its schema: an element it does not know is MalformedXML."""
    _malformed_unless(not set(content) - set(names))


def _value(content: Mapping[str, Any], name: str) -> str | None:
    return s3xml.text(content[name]) if name in content else None


# -- documents Put stores and Get returns ---------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One sub-resource kept as a document."""

    name: str  # the sub-resource, and the document's name in storage
    root: str  # its document element
    missing: type[errors.S3Error] | None = None  # Get's error when there is none
    default: bytes | None = None  # what Get answers for a bucket that was never configured
    validate: Validator | None = None
    empty_removes: bool = False  # a Put of an empty document turns the feature off
    headers: Mapping[str, str] = field(default_factory=dict)  # on Get and Put answers
    digest_required: bool = False  # Put refused without a Content-MD5 or checksum (read_xml_body)

    @property
    def tombstone(self) -> bool:
        """S3 answers a default until the configuration is deleted, then an error
        (OwnershipControls, PublicAccessBlock): a deletion is remembered as an empty document."""
        return self.default is not None and self.missing is not None


def _get(kind: Kind) -> Handler:
    async def get(ctx: Context) -> web.StreamResponse:
        document = await ctx.backend.get_bucket_config(ctx.bucket, kind.name)
        if document:
            return xml_response(document, headers=kind.headers)
        if document is None and kind.default is not None:
            return xml_response(kind.default, headers=kind.headers)
        assert kind.missing is not None
        raise kind.missing(BucketName=ctx.bucket)

    return get


def _put(kind: Kind) -> Handler:
    async def put(ctx: Context) -> web.StreamResponse:
        content = s3xml.parse_document(await ctx.read_xml_body(digest_required=kind.digest_required), kind.root)
        if kind.validate is not None:
            kind.validate(content, ctx.bucket)
        await _store(ctx, kind, content)
        return web.Response(status=200, headers=kind.headers)

    return put


async def _store(ctx: Context, kind: Kind, content: dict[str, Any]) -> None:
    if kind.empty_removes and not content:
        await ctx.backend.delete_bucket_config(ctx.bucket, kind.name)
    else:
        await ctx.backend.put_bucket_config(ctx.bucket, kind.name, s3xml.render_document(kind.root, content))


def _delete(kind: Kind) -> Handler:
    async def delete(ctx: Context) -> web.StreamResponse:
        if kind.tombstone:
            await ctx.backend.put_bucket_config(ctx.bucket, kind.name, b"")
        else:
            await ctx.backend.delete_bucket_config(ctx.bucket, kind.name)
        return web.Response(status=204)

    return delete


def _website(content: dict[str, Any], bucket: str) -> None:
    _only(content, "IndexDocument", "ErrorDocument", "RedirectAllRequestsTo", "RoutingRules")
    redirect = content.get("RedirectAllRequestsTo")
    if redirect is not None:
        _malformed_unless(isinstance(redirect, dict) and redirect.get("HostName"))
        return
    index = content.get("IndexDocument")
    suffix = _value(index, "Suffix") if isinstance(index, dict) else None
    if not suffix:
        raise errors.InvalidArgument(
            "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo is empty",
            ArgumentName="IndexDocument",
        )
    if "/" in suffix:
        raise errors.InvalidArgument("The IndexDocument Suffix is not well formed", ArgumentName="IndexDocument")


_LIFECYCLE_ACTIONS = (
    "Expiration", "Transition", "NoncurrentVersionExpiration", "NoncurrentVersionTransition", "AbortIncompleteMultipartUpload"
)


def _lifecycle(content: dict[str, Any], bucket: str) -> None:
    _only(content, "Rule")
    rules = s3xml.as_list(content.get("Rule"))
    _malformed_unless(1 <= len(rules) <= 1000)
    ids: set[str] = set()
    for rule in rules:
        _malformed_unless(isinstance(rule, dict) and _value(rule, "Status") in ("Enabled", "Disabled"))
        rule_id = _value(rule, "ID") or ""
        if len(rule_id) > 255:
            raise errors.InvalidArgument("ID length should not exceed allowed limit of 255")
        if rule_id and rule_id in ids:
            raise errors.InvalidArgument("Rule ID must be unique. Found same ID for more than one rule")
        if not rule_id:
            # S3 names a rule sent without one (a random UUID, base64) and Get shows that name.
            rule_id = base64.b64encode(str(uuid.uuid4()).encode()).decode()
            rule.update({"ID": rule_id} | {k: rule.pop(k) for k in list(rule) if k != "ID"})
        ids.add(rule_id)
        if not any(action in rule for action in _LIFECYCLE_ACTIONS):
            raise errors.InvalidRequest("At least one action needs to be specified in a rule")
        _lifecycle_days(rule)


# (action, its element of days, the least it may be): a Transition may be on the day of creation.
_LIFECYCLE_DAYS = (
    ("Expiration", "Days", 1),
    ("Transition", "Days", 0),
    ("NoncurrentVersionExpiration", "NoncurrentDays", 1),
    ("AbortIncompleteMultipartUpload", "DaysAfterInitiation", 1),
)


def _lifecycle_days(rule: dict[str, Any]) -> None:
    """S3's checks of a rule's days (whole numbers, else MalformedXML) and dates (midnight UTC)."""
    for action, element, least in _LIFECYCLE_DAYS:
        for item in s3xml.as_list(rule.get(action)):
            _malformed_unless(isinstance(item, dict))
            days = _value(item, element)
            _malformed_unless(days is None or re.fullmatch(r"-?[0-9]+", days.strip()))
            if days is not None and int(days) < least:
                raise errors.InvalidArgument(f"'{element}' for {action} action must be a positive integer")
            date = _value(item, "Date") if action in ("Expiration", "Transition") else None
            if date is not None and not _midnight_utc(date):
                raise errors.InvalidArgument("'Date' must be at midnight GMT", ArgumentName="Date", ArgumentValue=date)


def _midnight_utc(text: str) -> bool:
    """Whether an ISO 8601 date-time (botocore sends 2030-01-01T00:00:00Z) is midnight UTC; what
    is no date-time at all is MalformedXML (the schema's xsd:dateTime)."""
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise errors.MalformedXML() from None
    return (when.astimezone(datetime.UTC) if when.tzinfo else when).time() == datetime.time(0)


_SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")


def _encryption(content: dict[str, Any], bucket: str) -> None:
    _only(content, "Rule")
    rules = s3xml.as_list(content.get("Rule"))
    _malformed_unless(len(rules) == 1 and isinstance(rules[0], dict))
    rule = rules[0]
    _only(rule, "ApplyServerSideEncryptionByDefault", "BucketKeyEnabled", "BlockedEncryptionTypes")
    if "BucketKeyEnabled" in rule:
        _malformed_unless(_value(rule, "BucketKeyEnabled") in ("true", "false"))
    blocked = rule.get("BlockedEncryptionTypes")
    if blocked is not None:
        _malformed_unless(blocked == "" or (isinstance(blocked, dict) and not set(blocked) - {"EncryptionType"}))
        _malformed_unless(all(value in ("NONE", "SSE-C") for value in encryption.blocked_types(rule)))
    default = rule.get("ApplyServerSideEncryptionByDefault")
    if default is None:
        return
    _malformed_unless(isinstance(default, dict))
    _only(default, "SSEAlgorithm", "KMSMasterKeyID")
    algorithm = _value(default, "SSEAlgorithm")
    _malformed_unless(algorithm in _SSE_ALGORITHMS)
    if "KMSMasterKeyID" in default and algorithm == "AES256":
        raise errors.InvalidArgument(
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse",
            ArgumentName="ApplyServerSideEncryptionByDefault",
        )


def _ownership(content: dict[str, Any], bucket: str) -> None:
    _only(content, "Rule")
    rules = s3xml.as_list(content.get("Rule"))
    _malformed_unless(len(rules) == 1 and isinstance(rules[0], dict))
    _only(rules[0], "ObjectOwnership")
    ownership = _value(rules[0], "ObjectOwnership")
    _malformed_unless(ownership in OWNERSHIPS)


OWNERSHIPS = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")  # S3's default for a new bucket first
_PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def _public_access_block(content: dict[str, Any], bucket: str) -> None:
    _only(content, *_PUBLIC_ACCESS_FLAGS)
    flags = {name: (_value(content, name) or "false").lower() for name in _PUBLIC_ACCESS_FLAGS}
    _malformed_unless(all(value in ("true", "false") for value in flags.values()))
    # S3 answers all four, in its order, a flag left out being false.
    content.clear()
    content.update(flags)


def _notification(content: dict[str, Any], bucket: str) -> None:
    _only(
        content,
        "TopicConfiguration",
        "QueueConfiguration",
        "CloudFunctionConfiguration",
        "EventBridgeConfiguration",
    )


def _request_payment(content: dict[str, Any], bucket: str) -> None:
    _only(content, "Payer")
    _malformed_unless(_value(content, "Payer") in ("Requester", "BucketOwner"))


def _accelerate(content: dict[str, Any], bucket: str) -> None:
    _only(content, "Status")
    _malformed_unless(_value(content, "Status") in ("Enabled", "Suspended"))
    if "." in bucket:
        raise errors.InvalidRequest("S3 Transfer Acceleration is not supported for buckets with periods (.) in their names")


def _logging(content: dict[str, Any], bucket: str) -> None:
    _only(content, "LoggingEnabled")
    enabled = content.get("LoggingEnabled")
    if enabled is not None:
        _malformed_unless(isinstance(enabled, dict) and "TargetBucket" in enabled and "TargetPrefix" in enabled)


def _replication(content: dict[str, Any], bucket: str) -> None:
    _only(content, "Role", "Rule")
    _malformed_unless(_value(content, "Role") is not None and s3xml.as_list(content.get("Rule")))


def _object_lock(content: dict[str, Any], bucket: str) -> None:
    _only(content, "ObjectLockEnabled", "Rule")
    _malformed_unless(_value(content, "ObjectLockEnabled") == "Enabled")
    if "Rule" in content:
        rule = content["Rule"]
        _malformed_unless(isinstance(rule, dict) and isinstance(rule.get("DefaultRetention"), dict))
        retention = rule["DefaultRetention"]
        _malformed_unless(_value(retention, "Mode") in ("GOVERNANCE", "COMPLIANCE"))
        _malformed_unless(("Days" in retention) != ("Years" in retention))


def _default(root: str, body: str = "") -> bytes:
    # Written out rather than rendered: rendering loads xmltodict, which start-up leaves out.
    return f'{s3xml.HEADER}<{root} xmlns="{s3xml.NS}">{body}</{root}>'.encode()


# x-amz-transition-default-minimum-object-size: S3's default since September 2024, on both answers.
_LIFECYCLE_HEADERS = {"x-amz-transition-default-minimum-object-size": "all_storage_classes_128K"}

WEBSITE = Kind("website", "WebsiteConfiguration", errors.NoSuchWebsiteConfiguration, validate=_website)
LIFECYCLE = Kind(
    "lifecycle", "LifecycleConfiguration", errors.NoSuchLifecycleConfiguration, validate=_lifecycle,
    headers=_LIFECYCLE_HEADERS, digest_required=True,
)  # fmt: skip
# New buckets are encrypted with SSE-S3 by default (S3, since January 2023) and block SSE-C
# (S3, since April 2026); a delete restores that.
ENCRYPTION = Kind(
    "encryption",
    "ServerSideEncryptionConfiguration",
    default=_default(
        "ServerSideEncryptionConfiguration",
        "<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm>"
        "</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>false</BucketKeyEnabled>"
        "<BlockedEncryptionTypes><EncryptionType>SSE-C</EncryptionType></BlockedEncryptionTypes></Rule>",
    ),
    validate=_encryption,
)
# S3's settings for new buckets since April 2023.
OWNERSHIP = Kind(
    "ownershipControls",
    "OwnershipControls",
    errors.OwnershipControlsNotFoundError,
    default=_default("OwnershipControls", "<Rule><ObjectOwnership>BucketOwnerEnforced</ObjectOwnership></Rule>"),
    validate=_ownership,
)
PUBLIC_ACCESS_BLOCK = Kind(
    "publicAccessBlock",
    "PublicAccessBlockConfiguration",
    errors.NoSuchPublicAccessBlockConfiguration,
    default=_default("PublicAccessBlockConfiguration", "".join(f"<{name}>true</{name}>" for name in _PUBLIC_ACCESS_FLAGS)),
    validate=_public_access_block,
)
LOGGING = Kind(
    "logging", "BucketLoggingStatus", default=_default("BucketLoggingStatus"), validate=_logging, empty_removes=True
)
NOTIFICATION = Kind(
    "notification",
    "NotificationConfiguration",
    default=_default("NotificationConfiguration"),
    validate=_notification,
    empty_removes=True,
)
REQUEST_PAYMENT = Kind(
    "requestPayment",
    "RequestPaymentConfiguration",
    default=_default("RequestPaymentConfiguration", "<Payer>BucketOwner</Payer>"),
    validate=_request_payment,
)
ACCELERATE = Kind(
    "accelerate", "AccelerateConfiguration", default=_default("AccelerateConfiguration"), validate=_accelerate
)
REPLICATION = Kind(
    "replication", "ReplicationConfiguration", errors.ReplicationConfigurationNotFoundError, validate=_replication
)
OBJECT_LOCK = Kind(
    "object-lock", "ObjectLockConfiguration", errors.ObjectLockConfigurationNotFoundError, validate=_object_lock
)

get_bucket_website, put_bucket_website, delete_bucket_website = _get(WEBSITE), _put(WEBSITE), _delete(WEBSITE)
get_bucket_lifecycle_configuration = _get(LIFECYCLE)
put_bucket_lifecycle_configuration = _put(LIFECYCLE)
delete_bucket_lifecycle = _delete(LIFECYCLE)
get_bucket_encryption = _get(ENCRYPTION)
delete_bucket_encryption = _delete(ENCRYPTION)


async def put_bucket_encryption(ctx: Context) -> web.StreamResponse:
    """A configuration without BlockedEncryptionTypes (or with an empty one) keeps the bucket's
    SSE-C block as it is, as S3 does: only NONE or SSE-C named there changes it."""
    content = s3xml.parse_document(await ctx.read_xml_body(), ENCRYPTION.root)
    _encryption(content, ctx.bucket)
    rule = content["Rule"] if isinstance(content["Rule"], dict) else content["Rule"][0]
    if not encryption.blocked_types(rule):
        current = await ctx.backend.get_bucket_config(ctx.bucket, ENCRYPTION.name)
        blocked = encryption.bucket_encryption(current or b"").blocks_customer_keys
        rule["BlockedEncryptionTypes"] = {"EncryptionType": "SSE-C" if blocked else "NONE"}
    await _store(ctx, ENCRYPTION, content)
    return web.Response(status=200)
get_bucket_ownership_controls, put_bucket_ownership_controls = _get(OWNERSHIP), _put(OWNERSHIP)
delete_bucket_ownership_controls = _delete(OWNERSHIP)
get_public_access_block, put_public_access_block = _get(PUBLIC_ACCESS_BLOCK), _put(PUBLIC_ACCESS_BLOCK)
delete_public_access_block = _delete(PUBLIC_ACCESS_BLOCK)
get_bucket_notification_configuration = _get(NOTIFICATION)
put_bucket_notification_configuration = _put(NOTIFICATION)
get_bucket_request_payment, put_bucket_request_payment = _get(REQUEST_PAYMENT), _put(REQUEST_PAYMENT)
get_bucket_accelerate_configuration = _get(ACCELERATE)
put_bucket_accelerate_configuration = _put(ACCELERATE)
get_bucket_logging = _get(LOGGING)
get_bucket_replication, delete_bucket_replication = _get(REPLICATION), _delete(REPLICATION)
get_object_lock_configuration = _get(OBJECT_LOCK)


async def put_bucket_logging(ctx: Context) -> web.StreamResponse:
    content = s3xml.parse_document(await ctx.read_xml_body(), LOGGING.root)
    _logging(content, ctx.bucket)
    enabled = content.get("LoggingEnabled")
    if isinstance(enabled, dict):
        target = s3xml.text(enabled["TargetBucket"])
        try:
            info = await ctx.backend.head_bucket(target)
        except errors.NoSuchBucket:
            raise errors.InvalidTargetBucketForLogging(TargetBucket=target) from None
        if info.owner != ctx.user.user_id:
            raise errors.InvalidTargetBucketForLogging(
                "The owner for the bucket to be logged and the target bucket must be the same.", TargetBucket=target
            )
    await _store(ctx, LOGGING, content)
    return web.Response(status=200)


async def put_bucket_replication(ctx: Context) -> web.StreamResponse:
    # Buckets here are never versioned, and S3 replicates only versioned buckets.
    _replication(s3xml.parse_document(await ctx.read_xml_body(), REPLICATION.root), ctx.bucket)
    raise errors.InvalidRequest("Versioning must be 'Enabled' on the bucket to apply a replication configuration")


async def put_object_lock_configuration(ctx: Context) -> web.StreamResponse:
    # Object Lock needs versioning, which s3serve does not have.
    _object_lock(s3xml.parse_document(await ctx.read_xml_body(), OBJECT_LOCK.root), ctx.bucket)
    raise errors.InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration")


# -- versioning -----------------------------------------------------------------------------------


async def get_bucket_versioning(ctx: Context) -> web.StreamResponse:
    document = await ctx.backend.get_bucket_config(ctx.bucket, "versioning")
    # Never configured: S3 answers an empty configuration (no Status).
    return xml_response(document or s3xml.versioning())


async def put_bucket_versioning(ctx: Context) -> web.StreamResponse:
    content = s3xml.parse_document(await ctx.read_xml_body(), "VersioningConfiguration")
    _only(content, "Status", "MfaDelete")
    status, mfa_delete = _value(content, "Status"), _value(content, "MfaDelete")
    if status is None and mfa_delete is None:
        raise errors.IllegalVersioningConfigurationException()
    _malformed_unless(status in (None, "Enabled", "Suspended") and mfa_delete in (None, "Enabled", "Disabled"))
    if status == "Enabled":
        raise errors.NotImplementedOp(
            "PutBucketVersioning with Status Enabled is not implemented by s3serve: an object has one version."
        )
    if mfa_delete == "Enabled":
        raise errors.NotImplementedOp("MFA delete is not implemented by s3serve.")
    # Suspended is what an unversioned bucket does already (every object is the 'null' version),
    # and S3 reports it from then on, even for a bucket that was never versioned.
    stored = {"Status": status} if status else {}
    if mfa_delete:
        stored["MfaDelete"] = mfa_delete
    await ctx.backend.put_bucket_config(ctx.bucket, "versioning", s3xml.render_document("VersioningConfiguration", stored))
    return web.Response(status=200)


# -- tagging --------------------------------------------------------------------------------------


def _tag_text_ok(text: str) -> bool:
    return all(c.isalnum() or c.isspace() or c in _TAG_PUNCTUATION for c in text)


TAGGING = Kind("tagging", "Tagging", errors.NoSuchTagSet)
get_bucket_tagging, delete_bucket_tagging = _get(TAGGING), _delete(TAGGING)


async def put_bucket_tagging(ctx: Context) -> web.StreamResponse:
    tags = s3xml.parse_tagging(await ctx.read_xml_body(digest_required=True))
    if len(tags) > MAX_BUCKET_TAGS:
        raise errors.BadRequest("Bucket tag count cannot be greater than 50")
    for key, value in tags.items():
        if key.lower().startswith("aws:"):
            raise errors.InvalidTag("System tags cannot be added/updated by requester", TagKey=key)
        if not _tag_text_ok(key):
            raise errors.InvalidTag("The TagKey you have provided is invalid", TagKey=key)
        if not _tag_text_ok(value):
            raise errors.InvalidTag("The TagValue you have provided is invalid", TagKey=key, TagValue=value)
    validate_tags(tags, MAX_BUCKET_TAGS)
    if tags:
        await ctx.backend.put_bucket_config(ctx.bucket, "tagging", s3xml.tagging(tags))
    else:
        await ctx.backend.delete_bucket_config(ctx.bucket, "tagging")
    return web.Response(status=204)


# -- CORS -----------------------------------------------------------------------------------------


CORS = Kind("cors", "CORSConfiguration", errors.NoSuchCORSConfiguration)
get_bucket_cors, delete_bucket_cors = _get(CORS), _delete(CORS)


async def put_bucket_cors(ctx: Context) -> web.StreamResponse:
    rules = cors.parse(s3xml.parse_document(await ctx.read_xml_body(digest_required=True), "CORSConfiguration"))
    document = s3xml.render_document("CORSConfiguration", cors.to_document(rules))
    await ctx.backend.put_bucket_config(ctx.bucket, "cors", document)
    return web.Response(status=200)


async def preflight(request: web.Request, backend: Backend, route: Route) -> web.StreamResponse:
    """OPTIONS /bucket[/key]: a browser asks whether it may send a cross-origin request. It
    carries no credentials; the bucket's CORS rules alone decide. Checks in S3's order, with its
    codes and messages (errors name no Resource, as S3's do not)."""
    origin = request.headers.get("Origin")
    if not origin:
        raise errors.BadRequest("Insufficient information. Origin request header needed.", resource="")
    method = request.headers.get("Access-Control-Request-Method")
    assert route.bucket is not None
    try:
        await backend.head_bucket(route.bucket)
    except errors.NoSuchBucket:
        raise errors.AccessForbidden(
            "CORSResponse: Bucket not found", resource="", Method=method or "OPTIONS", ResourceType="BUCKET"
        ) from None
    rules = await backend.cached_bucket_config(route.bucket, "cors", cors.load)
    if not rules:
        raise errors.AccessForbidden(
            "CORSResponse: CORS is not enabled for this bucket.",
            resource="",
            Method=method or "OPTIONS",
            ResourceType="BUCKET",
        )
    if method not in cors.METHODS:
        raise errors.BadRequest(f"Invalid Access-Control-Request-Method: {method or 'null'}", resource="")
    requested = cors.requested_headers(request.headers.get("Access-Control-Request-Headers"))
    rule = cors.find_rule(rules, origin, method, requested)
    if rule is None:
        level = "OBJECT" if route.key is not None else "BUCKET"
        raise errors.AccessForbidden(resource="", Method=method, ResourceType=level)
    return web.Response(status=200, headers=cors.response_headers(rule, origin, requested))


async def add_cors_headers(request: web.BaseRequest, response: web.StreamResponse, backend: Backend, bucket: str) -> None:
    """The Access-Control-* headers of an actual cross-origin request (one with an Origin) that
    a rule of the bucket allows, errors included, as S3 adds them."""
    origin = request.headers.get("Origin")
    if not origin:
        return
    rules = await backend.cached_bucket_config(bucket, "cors", cors.load)
    if not rules:
        return
    rule = cors.find_rule(rules, origin, request.method)
    if rule is not None:
        response.headers.update(cors.response_headers(rule, origin))
