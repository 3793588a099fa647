"""The aiohttp application: one catch-all route that renders every failure as an S3 error; lifecycle."""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from . import errors, s3xml
from .config import Config
from .handlers import HANDLERS
from .handlers.bucket_config import PREFLIGHT, add_cors_headers, preflight
from .handlers.common import (
    EARLY_CHECKS,
    STORAGE_CHECKS_BUCKET,
    Context,
    HeaderPhase,
    parse_query,
)
from .handlers.multipart import complete_multipart_upload_headers, upload_part_headers
from .handlers.objects import put_object_headers
from .handlers.policy import POLICY, authorize_signed, grant_anonymous, may_list
from .payload import check_payload_claim
from .policy import load as load_policy
from .query_headers import with_query_headers
from .routing import Route, resolve
from .sigv4 import AuthResult, RequestView, authenticate
from .storage.base import Backend

log = logging.getLogger("s3serve")


class Inflight:
    """Requests being handled, so a shutdown can let them finish before closing connections."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if not self.count:
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


BACKEND: web.AppKey[Backend] = web.AppKey("backend", Backend)
INFLIGHT: web.AppKey[Inflight] = web.AppKey("inflight", Inflight)
CONFIG: web.AppKey[Config] = web.AppKey("config", Config)

SERVER_NAME = "s3serve"
# Operations that need no bucket ownership check (they have no bucket, or create it), nor a
# bucket policy (AWS decides them by identity policies alone).
_NO_BUCKET_CHECK = frozenset({"ListBuckets", "CreateBucket"})
# Refusals of a HeadBucket that still carry the bucket's region, as S3's do (_bucket_region).
_REGION_ON_REFUSAL = frozenset({301, 400, 403})
# Operations whose owner's request to a bucket without a policy dispatch lets through on the
# bucket's record alone: those whose storage call tells a missing bucket itself, and PutObject,
# whose storage call tells it before it reads the body. Before a 100 Continue the check stays
# whole (_check_before_body): an upload to a missing bucket is refused before it is sent.
_OWNER_FAST_PATH = STORAGE_CHECKS_BUCKET | {"PutObject"}
# Operations whose credentials travel in the body (PostObject's form fields): their handler
# authenticates them and checks the bucket's owner and policy itself.
_FORM_AUTH = frozenset({"PostObject"})
# The handlers' checks that need no body (their header phases, see common.header_checks), run
# before the 100 Continue of a client that expects one: the operations whose bodies are large.
_HEADER_PHASES: dict[str, HeaderPhase] = {
    "PutObject": put_object_headers,
    "UploadPart": upload_part_headers,
    "CompleteMultipartUpload": complete_multipart_upload_headers,
}


# Request ids: a random per-process prefix and a counter. os.urandom per request was a visible
# syscall on the small-object path; ids only need to be unique, not unpredictable.
_ID_PREFIX = os.urandom(4).hex().upper()
_id_counter = itertools.count(1)


def _new_id_prefix() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(4).hex().upper()


# --workers forks: each worker gets its own prefix.
os.register_at_fork(after_in_child=_new_id_prefix)


def next_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08X}"


@dataclass
class RequestState:
    """What s3serve learns about a request, kept on it between the expect handler, the error
    rendering and dispatch (each step runs once)."""

    request_id: str = field(default_factory=next_request_id)
    raw_path: str = ""
    raw_query: str = ""
    query_pairs: list[tuple[str, str]] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    route: Route | None = None
    auth: AuthResult | None = None
    authenticated: bool = False  # ``auth`` holds authenticate's answer (None: anonymous)
    bucket_checked: bool = False
    # What the bucket policy granted an anonymous request (kept apart from ``auth``: dispatch
    # handles such a request on a path of its own).
    anonymous: AuthResult | None = None


STATE: web.RequestKey[RequestState] = web.RequestKey("s3serve", RequestState)


def _state(request: web.BaseRequest) -> RequestState:
    state = request.get(STATE)
    if state is None:
        state = request[STATE] = RequestState()
    return state


def _request_id(request: web.BaseRequest) -> str:
    return _state(request).request_id


def error_response(request: web.BaseRequest, exc: errors.S3Error) -> web.Response:
    headers = dict(exc.headers)
    if exc.status == 304:
        response = web.Response(status=exc.status, headers=headers)  # never with a body
    elif request.method == "HEAD":
        # No body, but a GET's headers: the error document's type, as S3 sends, and its length,
        # without which a client cannot tell the answer ended (aiohttp's client then drops the
        # connection and opens a new one for the next request: every HEAD of a missing key).
        headers["Content-Type"] = "application/xml"
        headers["Content-Length"] = str(len(error_body(request, exc)))
        response = web.Response(status=exc.status, headers=headers)
    else:
        response = web.Response(
            status=exc.status, body=error_body(request, exc), content_type="application/xml", headers=headers
        )
    if headers.get("Connection") == "close":
        # The request's body has no end the server can find (payload.closing): aiohttp would read
        # the bytes after it as the next request.
        response.force_close()
    return response


def error_body(request: web.BaseRequest, exc: errors.S3Error) -> bytes:
    """The <Error> document of a failed request."""
    rid = _request_id(request)
    resource = exc.resource if exc.resource is not None else request.raw_path.split("?", 1)[0]
    if exc.code == "NoSuchKey":
        # S3's NoSuchKey names the key in <Key> and has no <Resource> (localstack's snapshots
        # of AWS's answers), whether the server found it missing on disk or upstream.
        resource = ""
    extra = dict(exc.extra)
    route = _state(request).route
    # S3 names the missing thing in the error body; storage raises without knowing the request.
    if route is not None:
        if exc.code in ("NoSuchKey", "NoSuchUpload") and route.key is not None:
            extra.setdefault("Key", route.key)
        if exc.code in ("NoSuchBucket", "BucketNotEmpty", "BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
            extra.setdefault("BucketName", route.bucket)
    return s3xml.error(exc.code, exc.message, resource, rid, extra)


async def handle(request: web.Request) -> web.StreamResponse:
    """The one route: dispatch, with every failure rendered as an S3 error. A plain handler rather
    than an aiohttp middleware, which costs two extra coroutine layers on every request."""
    inflight = request.app[INFLIGHT]
    inflight.enter()
    try:
        return await dispatch(request)
    except errors.S3Error as exc:
        if exc.status in _REGION_ON_REFUSAL:
            await _bucket_region(request, exc)
        return error_response(request, exc)
    except web.HTTPException as exc:
        # aiohttp's own refusals (e.g. a request line it cannot parse) become S3 errors too.
        return error_response(request, _from_http_exception(exc))
    except (ConnectionResetError, ConnectionAbortedError):
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.raw_path)
        return error_response(request, errors.InternalError())
    finally:
        inflight.leave()


async def _bucket_region(request: web.Request, exc: errors.S3Error) -> None:
    """S3 tells the region of a bucket a HeadBucket may not see (anonymous, or not allowed, or
    signed for another region): SDKs and tools read it there to find where a bucket lives (pyarrow,
    botocore's region redirects). A missing bucket has none to tell."""
    route = _state(request).route
    if route is None or route.operation != "HeadBucket" or route.bucket is None:
        return
    try:
        info = await request.app[BACKEND].head_bucket(route.bucket)
    except errors.S3Error:
        return
    exc.headers.setdefault("x-amz-bucket-region", info.region)


def _from_http_exception(exc: web.HTTPException) -> errors.S3Error:
    if exc.status == 413:
        return errors.EntityTooLarge()
    if exc.status == 405:
        return errors.MethodNotAllowed()
    err = errors.InvalidRequest(exc.reason or "Bad Request")
    err.status = exc.status if 400 <= exc.status < 500 else 400
    return err


async def _common_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    rid = _request_id(request)
    response.headers["x-amz-request-id"] = rid
    response.headers["x-amz-id-2"] = base64.b64encode(rid.encode() * 3).decode()
    response.headers["Server"] = SERVER_NAME
    # Requests without an Origin (all but browsers') pay this one lookup for CORS.
    if "Origin" in request.headers:
        await _cors_headers(request, response)


async def _cors_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    route = _state(request).route
    if route is None or route.bucket is None or route.operation == PREFLIGHT:
        return  # no bucket, or the preflight, which set its own
    if isinstance(request, web.Request):
        await add_cors_headers(request, response, request.app[BACKEND], route.bucket)


def _authenticate(request: web.Request) -> AuthResult | None:
    """The request's signer, or None for an anonymous request (see _grant_anonymous)."""
    state = _state(request)
    if state.authenticated:
        return state.auth
    route = state.route
    assert route is not None
    view = RequestView(
        method=request.method,
        raw_path=state.raw_path,
        query=state.query_pairs,
        raw_query=state.raw_query,
        headers=request.headers,
        vhost_bucket=route.bucket if route.vhost else None,
    )
    auth = authenticate(view, request.app[CONFIG].user_by_access_key)
    if auth is not None and auth.version == 4:
        check_payload_claim(request.method, request.headers, auth.content_sha256)
    state.auth = auth
    state.authenticated = True
    return state.auth


async def _grant_anonymous(request: web.Request, route: Route) -> AuthResult:
    """An anonymous request runs only as far as the bucket's policy allows (AccessDenied otherwise)."""
    state = _state(request)
    if state.anonymous is None:
        state.anonymous = await grant_anonymous(request, route, state.query, request.app[BACKEND], request.app[CONFIG])
        state.bucket_checked = True  # granted as the bucket's owner, found by the grant
    return state.anonymous


def _check_header_encoding(request: web.BaseRequest) -> None:
    """Refuse header values that are not UTF-8 on the wire. aiohttp keeps their bytes as lone
    surrogates, which no later step can encode: the signature's canonical request, the error
    document naming a value, the stored metadata would each fail with a 500."""
    for name, value in request.raw_headers:
        if not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise errors.InvalidArgument(
                    "Header values must be valid UTF-8.", ArgumentName=name.decode("latin-1")
                ) from None


def _route(request: web.Request) -> Route:
    state = _state(request)
    if state.route is None:
        _check_header_encoding(request)
        state.raw_path, _, state.raw_query = request.raw_path.partition("?")
        state.query_pairs, state.query = parse_query(state.raw_query)
        state.route = resolve(
            request.method, request.host, state.raw_path, state.query, request.headers, request.app[CONFIG].domain
        )
    return state.route


async def _expect_handler(request: web.Request) -> web.StreamResponse | None:
    """Expect: 100-continue: refuse a request whose headers doom it before the client sends the
    body (as S3 does: "If the message is rejected based on the headers, the body of the message
    is not sent"), then the interim 100. S3 ignores any other expectation (ceph s3-tests'
    bad_expect_mismatch tests: "amazon doesn't report an error with a non-expect 100"), so the
    request goes on as if it had none, as it does over HTTP/1.0, which has no expectations."""
    tokens = request.headers.get("EXPECT", "").lower().split(",")
    if request.version < (1, 1) or "100-continue" not in (token.strip() for token in tokens):
        return None
    try:
        await _check_before_body(request)
    except errors.S3Error as exc:
        response = error_response(request, exc)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.raw_path)
        response = error_response(request, errors.InternalError())
    else:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # As aiohttp's own expect handler does: the interim answer is not part of the response,
        # whose size the access log reports.
        request.writer.output_size = 0
        return None
    # The body was never read, so the connection cannot be reused.
    response.force_close()
    return response


async def _check_before_body(request: web.Request) -> None:
    """What dispatch and the handler check before they read the body, in their order; what it
    learns stays on the request, so that dispatch and the handler do not check it again."""
    route = _route(request)
    if route.operation == PREFLIGHT or route.operation in _FORM_AUTH:
        return  # no credentials in the headers: a preflight has none, PostObject's are in its body
    signed = _authenticate(request)
    headed = _with_query_headers(request, signed)
    auth = await _check_bucket(headed, route, signed or await _grant_anonymous(request, route))
    if route.operation not in HANDLERS:
        raise errors.not_implemented(route.operation)
    phase = _HEADER_PHASES.get(route.operation)
    if phase is not None:
        # On this request, not on its copy with the query's headers: dispatch makes its own copy
        # from it, which takes the result along.
        request[EARLY_CHECKS] = (phase, await phase(_context(headed, route, auth, request.app[BACKEND])))


async def _check_bucket(request: web.Request, route: Route, auth: AuthResult) -> AuthResult:
    """The bucket the request names is there, and the signer's or granted to it by the bucket's
    policy, which no Deny of forbids: NoSuchBucket, or AccessDenied (handlers/policy.py). Returns
    the request as it runs (as the bucket's owner, for a grant). Once per request: the expect
    handler's check holds for dispatch."""
    state = _state(request)
    if route.bucket is None or route.operation in _NO_BUCKET_CHECK or state.bucket_checked:
        return auth
    auth = state.auth = await authorize_signed(request, route, state.query, request.app[BACKEND], request.app[CONFIG], auth)
    state.bucket_checked = True
    return auth


async def dispatch(request: web.Request) -> web.StreamResponse:
    route = _route(request)
    if route.operation == PREFLIGHT:
        # A browser sends no credentials with a preflight: the bucket's CORS rules answer it.
        return await preflight(request, request.app[BACKEND], route)
    backend = request.app[BACKEND]
    auth = None
    if route.operation not in _FORM_AUTH:
        auth = _authenticate(request)
        if auth is None:
            return await _dispatch_anonymous(request, route, backend)
        request = _with_query_headers(request, auth)
        if (
            route.operation in _OWNER_FAST_PATH
            and route.bucket is not None
            and not _state(request).bucket_checked
        ):
            # GET, HEAD, DELETE and PUT, the hot path: the owner's request to a bucket without a
            # policy is decided here, with no memo to consult.
            owner, found = await backend.owner_and_config(route.bucket, POLICY, load_policy)
            if owner != auth.user.user_id or found is not None:
                auth = await _check_bucket(request, route, auth)
            elif route.operation not in STORAGE_CHECKS_BUCKET:
                # PutObject checks its headers before its storage call looks for the bucket's
                # folder: a bucket whose folder is gone (its record not yet) is NoSuchBucket
                # first, as on the general path.
                await backend.check_bucket(route.bucket)
        else:
            auth = await _check_bucket(request, route, auth)
        if auth.requester is not None:
            return await _dispatch_granted(request, route, backend, auth)
    handler = HANDLERS.get(route.operation)
    if handler is None:
        raise errors.not_implemented(route.operation)
    return await handler(_context(request, route, auth, backend))


async def _dispatch_anonymous(request: web.Request, route: Route, backend: Backend) -> web.StreamResponse:
    return await _dispatch_granted(request, route, backend, await _grant_anonymous(request, route))


async def _dispatch_granted(request: web.Request, route: Route, backend: Backend, auth: AuthResult) -> web.StreamResponse:
    """A request the bucket's policy granted to someone other than the bucket's owner
    (anonymous, or another user), which runs as the owner."""
    handler = HANDLERS.get(route.operation)
    if handler is None:
        raise errors.not_implemented(route.operation)
    try:
        return await handler(_context(request, route, auth, backend))
    except errors.NoSuchKey:
        # S3 tells such a requester that a key is missing only if it may list the bucket: for
        # every operation on an object (tagging, ACL, attributes, restore), not only GET/HEAD.
        if route.key is not None and not await may_list(request, route, backend, auth if auth.version else None):
            raise errors.AccessDenied() from None
        raise


def _context(request: web.Request, route: Route, auth: AuthResult | None, backend: Backend) -> Context:
    """What a handler (or its header phase) is given; the same for the expect handler's phase
    as for dispatch's handler."""
    return Context(
        request=request,
        route=route,
        query=_state(request).query,
        authenticated=auth,
        backend=backend,
        config=request.app[CONFIG],
        error_body=functools.partial(error_body, request),
    )


def _with_query_headers(request: web.Request, auth: AuthResult | None) -> web.Request:
    """The request as the policy checks and the handler read it: a presigned one with the headers
    its query carries (query_headers.py). Made right after authentication, which reads the
    request as sent."""
    if auth is None or not auth.presigned:
        return request
    return with_query_headers(request, _state(request).query_pairs)


def default_backend(config: Config) -> Backend:
    """The local directory, or with ``config.upstream`` the local directory caching that S3."""
    from .storage.disk import DiskBackend

    disk = DiskBackend(
        config.root,
        default_owner=config.default_owner.user_id,
        fsync=config.fsync,
        min_part_size=config.min_part_size,
        multipart_expiry=config.multipart_expiry,
        gc_interval=config.gc_interval,
        # A testing aid, not an option: records in sidecar files, as on a filesystem without
        # user xattrs, where the tests' filesystem has them (tests, tools/crash_torture.py).
        use_xattrs=False if os.environ.get("S3SERVE_TEST_SIDECARS", "").lower() in ("1", "true", "yes") else None,
    )
    if not config.upstream:
        return disk
    import ssl

    from .storage.cache import CacheBackend
    from .storage.remote import RemoteBackend

    context = ssl.create_default_context(cafile=str(config.upstream_ca)) if config.upstream_ca else None
    credentials, region = None, config.upstream_region
    if config.upstream_profile:
        from .storage.credentials import from_profile

        credentials, profile_region = from_profile(config.upstream_profile)  # checked by the CLI already
        region = region or profile_region
    upstream = RemoteBackend(
        config.upstream,
        config.upstream_access_key,
        config.upstream_secret_key,
        region or config.region,
        ssl_context=context,
        verify=config.upstream_verify,
        session_token=config.upstream_session_token,
        credentials=credentials,
    )
    return CacheBackend(
        disk,
        upstream,
        max_bytes=config.cache_size,
        revalidate_after=config.cache_revalidate,
        evict_interval=config.cache_evict_interval,
    )


def create_app(config: Config, backend: Backend | None = None) -> web.Application:
    if backend is None:
        backend = default_backend(config)
    # Object bodies stream through payload.py, never through request.read(), so the size limit
    # only guards the small XML bodies some handlers read whole.
    # Content-Encoding: gzip on an upload describes the object, not the transfer: aiohttp would
    # inflate the body (and store the first Content-Length bytes of the inflated data).
    app = web.Application(client_max_size=4 * 1024 * 1024, handler_args={"auto_decompress": False})
    app[CONFIG] = config
    app[BACKEND] = backend
    app[INFLIGHT] = Inflight()
    app.on_response_prepare.append(_common_headers)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await backend.start()
        yield
        await backend.stop()

    app.cleanup_ctx.append(lifecycle)
    # [\s\S], not ".": a key may hold a newline (%0A), which "." does not match.
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle, expect_handler=_expect_handler)
    return app


def direct_handler(app: web.Application) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The live server's request handler: ``create_app``'s one route, without aiohttp's router.
    Application._handle resolves the catch-all route and builds a match for every request (~5 %
    of a small GET's or HEAD's server CPU), yet the match is the same each time: it is made once
    here. The rest of what Application._handle does for this app, the route's expect handler, is
    done the same way; handler and expect handler are the route's, as registered by create_app.
    (The test client's runner keeps the router: both must answer alike every request whose
    target is a path. A target that is not one, "*" or an absolute URL, gets the router's plain
    404, and S3's 400 InvalidURI here.)"""
    (route,) = app.router.routes()
    match = UrlMappingMatchInfo({}, route)
    match.add_app(app)
    match.freeze()  # shared by every request: nothing may add to it
    handler, expect_handler = match.handler, match.expect_handler

    async def direct(request: web.BaseRequest) -> web.StreamResponse:
        assert isinstance(request, web.Request)  # the runner's factory is the app's
        request._match_info = match
        if request.headers.get(hdrs.EXPECT):
            response = await expect_handler(request)
            await request.writer.drain()
            if response is not None:
                return response
        return await handler(request)

    return direct
