"""Command line: ``s3serve serve ROOT [options]``; every option also has an S3SERVE_* variable."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .lean_import import import_aiohttp

import_aiohttp()  # before anything else imports it

from aiohttp import web  # noqa: E402

from .config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Config, User, load_users  # noqa: E402

log = logging.getLogger("s3serve")
T = TypeVar("T")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"S3SERVE_{name}", default)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _env_flag(name: str) -> bool:
    """A yes/no variable. "false" must not mean yes: S3SERVE_UPSTREAM_NO_VERIFY=false turned
    certificate checks off when any value but "" and "0" counted as set."""
    value = (_env(name) or "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise SystemExit(f"s3serve serve: S3SERVE_{name} must be 1/true/yes or 0/false/no, not {value!r}")
    return value in _TRUE


def _size(text: str) -> int:
    """Bytes from "50GiB", "512m", "2T", "1048576" (units are binary, B and iB optional)."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = 1
    if text and text[-1] in units:
        text, scale = text[:-1], units[text[-1]]
    value = float(text) * scale
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return int(value)


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    scale = 1
    if text and text[-1] in units:
        text, scale = text[:-1], units[text[-1]]
    value = float(text) * scale
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _parse(option: str, parse: Callable[[str], T], text: str, *, positive: bool = False) -> T:
    """``parse(text)``, or the one-line refusal that names the option (never a traceback)."""
    kind = "a size such as 512MiB or 50GiB" if parse is _size else "a duration such as 30s, 5m or 1h"
    try:
        value = parse(text)
    except ValueError:
        raise SystemExit(f"s3serve serve: {option} must be {kind}, not {text!r}") from None
    if positive and not value:
        # An interval of 0 is a loop that never sleeps.
        raise SystemExit(f"s3serve serve: {option} must be more than 0, not {text!r}")
    return value


def _or(value: str | None, default: str) -> str:
    # Not ``value or default``: an empty value given is refused, not taken for the default.
    return default if value is None else value


def _upstream_endpoint(text: str) -> str:
    """scheme://host[:port] of --upstream, as the upstream client will use it."""
    from yarl import URL

    try:
        url = URL(text.strip())
        port = url.port  # parsed lazily: "host:abc" fails here
        valid = (
            url.scheme in ("http", "https")
            and bool(url.host)
            and url.path in ("", "/")
            and not url.query_string
            and not url.fragment
            and url.user is None
            and url.password is None
        )
    except ValueError:
        url, port, valid = None, None, False
    if not valid or url is None:
        shown = text if "@" not in text else "(a URL with user info)"  # a password stays off the logs
        raise SystemExit(f"s3serve serve: --upstream must be http(s)://HOST[:PORT] with no path, not {shown!r}")
    host = url.host_subcomponent or ""
    return f"{url.scheme}://{host}" + (f":{port}" if url.explicit_port else "")


def _upstream_ca(path: str, no_verify: bool) -> Path:
    if no_verify:
        raise SystemExit("s3serve serve: --upstream-ca and --upstream-no-verify go against each other: give one")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise SystemExit(f"s3serve serve: --upstream-ca {path}: not a PEM CA bundle ({exc.reason or exc})") from None
    except OSError as exc:
        raise SystemExit(f"s3serve serve: --upstream-ca {path}: {exc.strerror or exc}") from None
    return Path(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3serve", description="An S3-compatible server over a local directory.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve ROOT over S3", description="Serve the folders of ROOT as S3 buckets.")
    serve.add_argument("root", nargs="?", default=_env("ROOT"), help="directory to serve [S3SERVE_ROOT]")
    serve.add_argument("--address", default=_env("ADDRESS", "127.0.0.1:9000"), help="HOST:PORT to listen on [S3SERVE_ADDRESS] (default 127.0.0.1:9000)")
    serve.add_argument("--access-key", default=_env("ACCESS_KEY", os.environ.get("AWS_ACCESS_KEY_ID")), help="access key of the single user [S3SERVE_ACCESS_KEY, AWS_ACCESS_KEY_ID]")
    serve.add_argument("--secret-key", default=_env("SECRET_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY")), help="secret key of the single user [S3SERVE_SECRET_KEY, AWS_SECRET_ACCESS_KEY]")
    serve.add_argument("--credentials", default=_env("CREDENTIALS"), help='JSON file {"users": [{"access_key", "secret_key", "display_name"?, "user_id"?}]} [S3SERVE_CREDENTIALS]')
    serve.add_argument("--region", default=_env("REGION", "us-east-1"), help="region this server answers for [S3SERVE_REGION]")
    serve.add_argument("--domain", default=_env("DOMAIN"), help="enable virtual-host style: <bucket>.DOMAIN [S3SERVE_DOMAIN]")
    serve.add_argument("--min-part-size", default=_env("MIN_PART_SIZE", "5MiB"), help="smallest multipart part but the last, for tests only lower it [S3SERVE_MIN_PART_SIZE] (default 5MiB)")
    serve.add_argument("--multipart-expiry", default=_env("MULTIPART_EXPIRY", "24h"), help="remove uploads idle this long [S3SERVE_MULTIPART_EXPIRY] (default 24h)")
    serve.add_argument("--gc-interval", default=_env("GC_INTERVAL", "1h"), help="how often to look for expired uploads [S3SERVE_GC_INTERVAL] (default 1h)")
    serve.add_argument("--body-timeout", default=_env("BODY_TIMEOUT", "20s"), help="answer 400 RequestTimeout when a request body stalls this long, or its headers take this long [S3SERVE_BODY_TIMEOUT] (default 20s, as S3)")
    serve.add_argument("--no-fsync", action="store_true", default=_env_flag("NO_FSYNC"), help="do not fsync object data before publishing it [S3SERVE_NO_FSYNC]")
    serve.add_argument("--tls-cert", default=_env("TLS_CERT"), help="PEM certificate for https [S3SERVE_TLS_CERT]")
    serve.add_argument("--tls-key", default=_env("TLS_KEY"), help="PEM private key for https [S3SERVE_TLS_KEY]")
    serve.add_argument("--tls-self-signed", action="store_true", default=_env_flag("TLS_SELF_SIGNED"), help="serve https with a generated self-signed certificate [S3SERVE_TLS_SELF_SIGNED]")
    serve.add_argument("--workers", default=_env("WORKERS", "1"), help="worker processes, each listening on the port (SO_REUSEPORT) [S3SERVE_WORKERS]")
    cache = serve.add_argument_group("upstream cache", "Keep ROOT as a write-through, read-through cache of another S3 endpoint.")
    cache.add_argument("--upstream", default=_env("UPSTREAM"), help="URL of the upstream S3 endpoint, e.g. https://s3.eu-west-1.amazonaws.com [S3SERVE_UPSTREAM]")
    cache.add_argument("--upstream-access-key", default=_env("UPSTREAM_ACCESS_KEY"), help="access key for the upstream [S3SERVE_UPSTREAM_ACCESS_KEY]")
    cache.add_argument("--upstream-secret-key", default=_env("UPSTREAM_SECRET_KEY"), help="secret key for the upstream [S3SERVE_UPSTREAM_SECRET_KEY]")
    cache.add_argument("--upstream-session-token", default=_env("UPSTREAM_SESSION_TOKEN"), help="session token of temporary upstream credentials (AWS STS) [S3SERVE_UPSTREAM_SESSION_TOKEN]")
    cache.add_argument("--upstream-profile", default=_env("UPSTREAM_PROFILE"), help="take the upstream's credentials (and region) from this AWS profile, renewed as they expire; needs botocore [S3SERVE_UPSTREAM_PROFILE]")
    cache.add_argument("--upstream-region", default=_env("UPSTREAM_REGION"), help="region to sign upstream requests for (default: --region) [S3SERVE_UPSTREAM_REGION]")
    cache.add_argument("--upstream-ca", default=_env("UPSTREAM_CA"), help="PEM bundle to verify the upstream's certificate with [S3SERVE_UPSTREAM_CA]")
    cache.add_argument("--upstream-no-verify", action="store_true", default=_env_flag("UPSTREAM_NO_VERIFY"), help="do not verify the upstream's certificate [S3SERVE_UPSTREAM_NO_VERIFY]")
    cache.add_argument("--cache-size", default=_env("CACHE_SIZE"), help="keep at most this many bytes of copies and of parts of multipart uploads in progress, e.g. 20GiB; temp files of transfers under way come on top (default: no limit) [S3SERVE_CACHE_SIZE]")
    cache.add_argument("--cache-revalidate", default=_env("CACHE_REVALIDATE"), help="serve a copy without asking the upstream for this long after it last confirmed it (default 0: ask on every read) [S3SERVE_CACHE_REVALIDATE]")
    cache.add_argument("--cache-evict-interval", default=_env("CACHE_EVICT_INTERVAL"), help="how often to check the cache's size [S3SERVE_CACHE_EVICT_INTERVAL] (default 1m)")
    serve.add_argument("--access-log", action="store_true", default=_env_flag("ACCESS_LOG"), help="log every request [S3SERVE_ACCESS_LOG]")
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "info"), help="debug, info, warning or error; debug adds the cache's eviction rounds [S3SERVE_LOG_LEVEL] (default info)")
    return parser


# The options that only mean something to the upstream cache: (option, args attribute, variable).
_CACHE_OPTIONS = (
    ("--upstream-access-key", "upstream_access_key", "UPSTREAM_ACCESS_KEY"),
    ("--upstream-secret-key", "upstream_secret_key", "UPSTREAM_SECRET_KEY"),
    ("--upstream-session-token", "upstream_session_token", "UPSTREAM_SESSION_TOKEN"),
    ("--upstream-profile", "upstream_profile", "UPSTREAM_PROFILE"),
    ("--upstream-region", "upstream_region", "UPSTREAM_REGION"),
    ("--upstream-ca", "upstream_ca", "UPSTREAM_CA"),
    ("--upstream-no-verify", "upstream_no_verify", "UPSTREAM_NO_VERIFY"),
    ("--cache-size", "cache_size", "CACHE_SIZE"),
    ("--cache-revalidate", "cache_revalidate", "CACHE_REVALIDATE"),
    ("--cache-evict-interval", "cache_evict_interval", "CACHE_EVICT_INTERVAL"),
)


def _without_upstream(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` of a plain server (no --upstream), with the cache options dropped.

    One given on the command line is a mistake the user can fix right away (a mistyped or
    forgotten --upstream would otherwise leave a plain server running where a cache was meant):
    refused. One that only comes from an S3SERVE_* variable may be left in an environment shared
    with a cache, or switched off by unsetting S3SERVE_UPSTREAM alone: a warning, and the server
    starts (nor is its value checked, since nothing uses it)."""
    given: list[str] = []
    inherited: list[str] = []
    for option, attribute, variable in _CACHE_OPTIONS:
        value = getattr(args, attribute)
        if not value:
            continue
        # A value equal to the variable's may have been typed as well; the variable alone explains it.
        from_env = _env_flag(variable) if isinstance(value, bool) else value == _env(variable)
        (inherited if from_env else given).append(f"S3SERVE_{variable}" if from_env else option)
    if given:
        one = len(given) == 1
        raise SystemExit(
            f"s3serve serve: {', '.join(given)} only {'applies' if one else 'apply'} to the upstream cache: "
            f"add --upstream URL, or leave {'it' if one else 'them'} out"
        )
    if inherited:
        log.warning("%s set without S3SERVE_UPSTREAM or --upstream: ignored (no upstream cache)", ", ".join(inherited))
    cleared = {attribute: False if attribute == "upstream_no_verify" else None for _, attribute, _ in _CACHE_OPTIONS}
    return argparse.Namespace(**{**vars(args), **cleared})


def _check_upstream_credentials(args: argparse.Namespace) -> None:
    keys = args.upstream_access_key or args.upstream_secret_key or args.upstream_session_token
    if args.upstream_profile:
        if keys:
            raise SystemExit("s3serve serve: --upstream-profile or the upstream's keys, not both")
        from .storage.credentials import from_profile

        try:
            from_profile(args.upstream_profile)  # at once, not in every worker's first request
        except ValueError as exc:
            raise SystemExit(f"s3serve serve: {exc}") from None
    elif not (args.upstream_access_key and args.upstream_secret_key):
        raise SystemExit(
            "s3serve serve: --upstream needs --upstream-access-key and --upstream-secret-key, or --upstream-profile"
        )


def config_from_args(args: argparse.Namespace) -> Config:
    if not args.root:
        raise SystemExit("s3serve serve: ROOT is required (or set S3SERVE_ROOT)")
    host, _, port = args.address.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"s3serve serve: --address must be HOST:PORT, not {args.address!r}")
    if args.credentials:
        users = load_users(Path(args.credentials))
    elif args.access_key or args.secret_key:
        if not (args.access_key and args.secret_key):
            raise SystemExit("s3serve serve: --access-key and --secret-key go together")
        users = [User(args.access_key, args.secret_key)]
    else:
        users = [User(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)]
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("s3serve serve: --tls-cert and --tls-key go together")
    if not str(args.workers).strip().isdigit():
        raise SystemExit(f"s3serve serve: --workers must be a number, not {args.workers!r}")
    if not args.upstream:
        args = _without_upstream(args)
    if args.upstream:
        _check_upstream_credentials(args)
    for option, value in (("--upstream-access-key", args.upstream_access_key), ("--upstream-session-token", args.upstream_session_token)):
        # They travel as header values: a CR, LF or other control character would fail every request.
        if value and not value.isprintable():
            raise SystemExit(f"s3serve serve: {option} holds a control character (a stray newline?)")
    upstream = _upstream_endpoint(args.upstream) if args.upstream else None
    return Config(
        root=Path(args.root),
        host=host.strip("[]"),
        port=int(port),
        users=users,
        region=args.region,
        domain=args.domain,
        fsync=not args.no_fsync,
        min_part_size=_parse("--min-part-size", _size, args.min_part_size),
        multipart_expiry=_parse("--multipart-expiry", _duration, args.multipart_expiry),
        gc_interval=_parse("--gc-interval", _duration, args.gc_interval, positive=True),
        body_timeout=_parse("--body-timeout", _duration, args.body_timeout, positive=True),
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        tls_self_signed=args.tls_self_signed,
        workers=max(1, int(args.workers)),
        upstream=upstream,
        upstream_access_key=args.upstream_access_key or "",
        upstream_secret_key=args.upstream_secret_key or "",
        upstream_session_token=args.upstream_session_token or None,
        upstream_profile=args.upstream_profile or None,
        upstream_region=args.upstream_region,
        upstream_verify=not args.upstream_no_verify,
        upstream_ca=_upstream_ca(args.upstream_ca, args.upstream_no_verify) if args.upstream_ca else None,
        cache_size=_parse("--cache-size", _size, args.cache_size) if args.cache_size else None,
        cache_revalidate=_parse("--cache-revalidate", _duration, _or(args.cache_revalidate, "0")),
        cache_evict_interval=_parse("--cache-evict-interval", _duration, _or(args.cache_evict_interval, "1m"), positive=True),
    )


def _banner(config: Config, scheme: str, ca: Path | None) -> str:
    user = config.users[0]
    host = "localhost" if config.host in ("0.0.0.0", "::") else config.host
    endpoint = f"{scheme}://{host}:{config.port}"
    lines = [
        f"s3serve serving {config.root.resolve()}",
        *([f"  Caching:    {config.upstream}"] if config.upstream else []),
        f"  Endpoint:   {endpoint}",
        f"  Region:     {config.region}",
        f"  Access key: {user.access_key}",
        f"  Secret key: {user.secret_key}",
    ]
    if len(config.users) > 1:
        lines.append(f"  ({len(config.users)} users from the credentials file)")
    ca_opt = f" --ca-bundle {ca}" if ca else ""
    lines.append(
        f"  Try: AWS_ACCESS_KEY_ID={user.access_key} AWS_SECRET_ACCESS_KEY={user.secret_key} "
        f"aws --endpoint-url {endpoint}{ca_opt} s3 ls"
    )
    return "\n".join(lines)


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


# glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Every socket read allocates asyncio's 256 KiB buffer and shrinks it to what came. Over glibc's
# starting threshold (128 KiB) that is an mmap, an mremap and an munmap per read, plus a page
# fault: 10-20 us of system time on every small request (measured in bench/RESULTS.md). glibc
# raises the threshold by itself once such a buffer is freed whole (a read of a large body), and
# not before, so whether a server paid it or not was chance. These are the thresholds glibc would
# then set: just over the buffer, and twice that for giving the top of the heap back.
_MMAP_THRESHOLD = 320 * 1024
_TRIM_THRESHOLD = 2 * _MMAP_THRESHOLD


def tune_malloc(arenas: int = 2) -> bool:
    """glibc gives each thread that allocates an arena of its own (up to 8 per core), and every
    arena keeps what was freed in it; with the write pool's threads and 1 MiB upload batches the
    server's memory crept up run after run. Two arenas, as commonly advised for Python servers
    (measured: peak RSS of 8 parallel 128 MiB PUTs after the small-object runs 92 -> 85 MiB).
    And fixed mmap and trim thresholds (see _MMAP_THRESHOLD). False where the C library has no
    mallopt (not glibc)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return all(
        [
            bool(mallopt(_M_ARENA_MAX, arenas)),
            bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)),
            bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)),
        ]
    )


# Open files a server asks for, when its hard limit allows (framing.connection_cap keeps three
# quarters of them in connections).
_WANTED_FILES = 65536


def raise_file_limit() -> None:
    """Raise the soft limit on open files to the hard one (at most _WANTED_FILES), as Go does for
    every program: the soft 1024 most shells give kept few connections for a server (each is one)."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _WANTED_FILES if hard == resource.RLIM_INFINITY else min(hard, _WANTED_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def serve(config: Config, access_log: bool = False) -> None:
    tune_malloc()  # before any thread starts
    raise_file_limit()  # before forking workers, which inherit it
    config.root.mkdir(parents=True, exist_ok=True)
    if config.upstream:
        from .storage.cache import claim_root

        try:
            claim_root(config.root, config.upstream)
        except ValueError as exc:
            raise SystemExit(f"s3serve serve: {exc}") from None
    ssl_context = None
    ca: Path | None = None
    if config.tls_cert and config.tls_key:
        from .tls import server_context

        ssl_context = server_context(config.tls_cert, config.tls_key)
    elif config.tls_self_signed:
        from .tls import self_signed, server_context

        hosts = ["localhost", "127.0.0.1", "::1", config.host]
        if config.domain:
            # Virtual-host clients ask for <bucket>.DOMAIN. (OpenSSL matches a wildcard only with
            # two labels after it: *.s3.localhost works, *.localhost does not.)
            hosts += [config.domain, f"*.{config.domain}"]
        cert, key = self_signed(config.root / ".s3serve" / "tls", hosts)
        ssl_context, ca = server_context(cert, key), cert
    scheme = "https" if ssl_context else "http"

    # Bound before forking, so a taken port fails the command, not one worker.
    sock = listen_socket(config.host, config.port, reuse_port=config.workers > 1)
    port = config.port = sock.getsockname()[1]  # what --address 127.0.0.1:0 got, for the banner
    print(_banner(config, scheme, ca), flush=True)

    # Each worker listens on a socket of its own (SO_REUSEPORT), so the kernel spreads new
    # connections over the workers. One inherited socket would leave it to whichever worker's event
    # loop wakes first, and asyncio accepts every queued connection in one go: bursts of 16-64
    # connections put a median 75-81 % of them (often all) on one worker, against 55 % with
    # SO_REUSEPORT (bench/RESULTS.md, optimisation log). Keep-alive connections stay where they land.
    children: list[int] = []
    parent = os.getpid()
    for _ in range(config.workers - 1):
        pid = os.fork()
        if pid == 0:
            _end_with(parent)
            children.clear()
            sock.close()
            sock = listen_socket(config.host, port, reuse_port=True)
            break
        children.append(pid)
    try:
        _run(config, sock, ssl_context, access_log)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _end_with(parent: int) -> None:
    """In a forked worker: be stopped (SIGTERM, a graceful shutdown) when the first process dies,
    however it dies. Killed with SIGKILL it cannot stop its workers itself, and a worker left
    serving the port would answer for a server its user believes stopped."""
    if sys.platform.startswith("linux"):
        import ctypes  # only with --workers

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(0)


_PR_SET_PDEATHSIG = 1

# How long a shutdown waits for requests in flight (an upload finishing) before cancelling them.
SHUTDOWN_GRACE = 30.0


def _run(config: Config, sock: socket.socket, ssl_context: ssl.SSLContext | None, access_log: bool) -> None:
    # asyncio's own loop, even where uvloop is installed: uvloop's loop has no sendfile (its
    # loop.sendfile raises NotImplementedError, so every large GET failed after its headers), and
    # on small requests it measured within this machine's noise (bench/RESULTS.md).
    asyncio.run(_serve(config, sock, ssl_context, access_log))


def loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """The event loop's error handler: asyncio's own, but for one of its bugs. Python 3.11's
    selector transport can run its connection_lost cleanup twice on a TLS connection its peer
    resets: _write_ready calls the protocol's resume_writing, whose TLS write meets the reset
    and has _force_close schedule the cleanup, then _write_ready runs the cleanup itself at
    once; the scheduled run finds the socket and protocol gone and raises AttributeError. The connection was closed and cleaned up by the first run; that traceback
    logged at ERROR would report a failure that did not happen."""
    callback = getattr(context.get("handle"), "_callback", None)
    transport = getattr(callback, "__self__", None)
    if (
        isinstance(context.get("exception"), AttributeError)
        and getattr(callback, "__name__", "") == "_call_connection_lost"
        and isinstance(transport, asyncio.Transport)
        and getattr(transport, "_sock", object()) is None
    ):
        log.debug("asyncio closed an already closed connection again (harmless): %s", context.get("exception"))
        return
    loop.default_exception_handler(context)


async def _serve(config: Config, sock: socket.socket, ssl_context: ssl.SSLContext | None, access_log: bool) -> None:
    """Serve until SIGINT/SIGTERM, then stop accepting connections and let the requests in
    flight finish (an upload is committed whole or, if its client gives up, discarded) before
    the connections close. aiohttp's own shutdown stops reading request bodies at once, which
    would turn every upload in flight into a discarded one."""
    from .app import INFLIGHT, create_app
    from .framing import S3AppRunner

    app = create_app(config)
    # S3's answers (not aiohttp's text/plain) to requests aiohttp cannot parse: framing.py.
    runner = S3AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    # Everything loaded so far lives as long as the server: keep it out of the collector's
    # full passes (measured: GC time per small GET 4 -> 1.2 us).
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_errors)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = None
    try:
        await stop.wait()
        deadline = loop.time() + SHUTDOWN_GRACE
        await site.stop()
        inflight = app[INFLIGHT]
        if inflight.count:
            log.info("shutting down: waiting for %d request(s) in flight", inflight.count)
            try:
                await asyncio.wait_for(inflight.idle(), SHUTDOWN_GRACE)
            except TimeoutError:
                log.warning("shutting down: cancelling %d request(s) still in flight", inflight.count)
    finally:
        server = runner.server
        transports = [conn.transport for conn in server.connections if conn.transport] if server else []
        await runner.cleanup()  # closes the connections, which send what they hold first
        if deadline is not None:
            await _drain(transports, deadline)


async def _drain(transports: list[asyncio.Transport], deadline: float) -> None:
    """Wait (until ``deadline``) for the closing connections to send what they hold. A streamed
    answer (a read-through GET) is complete for its handler once its last bytes are in the
    connection's write buffer, up to 64 KiB of them when the client reads slowly: ending the
    event loop then dropped them, and the download came up short."""
    loop = asyncio.get_running_loop()
    pending = [t for t in transports if t.get_write_buffer_size()]
    if pending:
        log.info("shutting down: %d connection(s) still receiving their answers", len(pending))
    while pending and loop.time() < deadline:
        await asyncio.sleep(0.05)
        pending = [t for t in pending if t.get_write_buffer_size()]
    if pending:
        log.warning("shutting down: %d answer(s) cut short: their clients stopped reading", len(pending))


class _ClientErrorsWithoutTraceback(logging.Filter):
    """aiohttp logs a request it cannot parse (a header line over its 8190-byte limit, a broken
    request line) as an ERROR with a traceback, before any handler runs. The fault is the
    client's and the client got its 400: one line at INFO says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            # Formatted here, once: the reason quotes the request's bytes, whose '%' are no
            # format directives for the handler's msg % args.
            reason = exc.message.splitlines()[0] if exc.message else ""
            record.msg = f"{record.getMessage()}: {exc.code} {reason}".rstrip()
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def log_level(text: str) -> int:
    level = _LOG_LEVELS.get(text.strip().lower())
    if level is None:
        raise SystemExit(f"s3serve serve: --log-level must be debug, info, warning or error, not {text!r}")
    return level


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    level = log_level(args.log_level) if args.command == "serve" else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.server").addFilter(_ClientErrorsWithoutTraceback())
    if args.command == "serve":
        config = config_from_args(args)
        try:
            serve(config, access_log=args.access_log)
        except OSError as exc:
            raise SystemExit(f"s3serve: {exc}") from None
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
