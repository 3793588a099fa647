"""Command line and environment: every option has an S3SERVE_* variable; AWS_* keys work too."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from s3serve import cli
from s3serve.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY


def _config(argv: list[str]):  # type: ignore[no-untyped-def]
    return cli.config_from_args(cli.build_parser().parse_args(argv))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("S3SERVE_", "AWS_")):
            monkeypatch.delenv(name)


def test_defaults(tmp_path: Path) -> None:
    config = _config(["serve", str(tmp_path)])
    assert (config.host, config.port, config.region) == ("127.0.0.1", 9000, "us-east-1")
    assert [(u.access_key, u.secret_key) for u in config.users] == [(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)]
    assert config.fsync and config.min_part_size == 5 * 1024 * 1024
    assert config.multipart_expiry == 24 * 3600 and config.gc_interval == 3600


def test_options(tmp_path: Path) -> None:
    config = _config(
        [
            "serve", str(tmp_path), "--address", "0.0.0.0:9100", "--access-key", "k", "--secret-key", "s",
            "--region", "eu-west-1", "--domain", "s3.example.test", "--min-part-size", "64KiB",
            "--multipart-expiry", "2m", "--gc-interval", "0.5s", "--no-fsync", "--workers", "3",
        ]
    )
    assert (config.host, config.port) == ("0.0.0.0", 9100)
    assert [(u.access_key, u.secret_key) for u in config.users] == [("k", "s")]
    assert (config.region, config.domain) == ("eu-west-1", "s3.example.test")
    assert config.min_part_size == 64 * 1024
    assert (config.multipart_expiry, config.gc_interval) == (120.0, 0.5)
    assert not config.fsync and config.workers == 3


def test_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3SERVE_ROOT", str(tmp_path))
    monkeypatch.setenv("S3SERVE_ADDRESS", "127.0.0.1:9200")
    monkeypatch.setenv("S3SERVE_REGION", "ap-south-1")
    monkeypatch.setenv("S3SERVE_DOMAIN", "localhost")
    monkeypatch.setenv("S3SERVE_MIN_PART_SIZE", "1MiB")
    monkeypatch.setenv("S3SERVE_NO_FSYNC", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    config = _config(["serve"])
    assert config.root == tmp_path and config.port == 9200
    assert (config.region, config.domain, config.min_part_size, config.fsync) == ("ap-south-1", "localhost", 1024 * 1024, False)
    assert [(u.access_key, u.secret_key) for u in config.users] == [("aws-key", "aws-secret")]
    # S3SERVE_ keys win over AWS_ ones, and the command line over both.
    monkeypatch.setenv("S3SERVE_ACCESS_KEY", "mine")
    monkeypatch.setenv("S3SERVE_SECRET_KEY", "my-secret")
    assert _config(["serve"]).users[0].access_key == "mine"
    assert _config(["serve", "--access-key", "cli", "--secret-key", "x"]).users[0].access_key == "cli"


def test_credentials_file(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text(
        json.dumps({"users": [{"access_key": "a", "secret_key": "sa", "display_name": "A"}, {"access_key": "b", "secret_key": "sb", "user_id": "bee"}]})
    )
    config = _config(["serve", str(tmp_path), "--credentials", str(users)])
    assert [(u.access_key, u.display_name) for u in config.users] == [("a", "A"), ("b", "b")]
    assert config.users[1].user_id == "bee"
    assert len(config.users[0].user_id) == 64  # derived, stable
    assert config.user_by_access_key("b") is config.users[1]
    assert config.user_by_access_key("nobody") is None


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["serve", "r", "--address", "nohostport"],
        ["serve", "r", "--access-key", "only-the-key"],
        ["serve", "r", "--tls-cert", "c.pem"],
    ],
)
def test_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _config(argv)


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (this one has long imported everything) and return stdout."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_start_up_imports_leave_out_what_the_first_request_does_not_need() -> None:
    # Each of these costs 5-100 ms of start-up; they load when an operation first needs them.
    loaded = _fresh_python(
        "import sys, s3serve.cli, s3serve.app, s3serve.tls\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'xmltodict', 'pyexpat', 'xml', 'cryptography', 'awscrt'})))"
    )
    assert loaded == ""


def test_lazily_imported_xml_parsing_and_escaping_work_on_first_use() -> None:
    out = _fresh_python(
        "from s3serve import s3xml, errors\n"
        "print(s3xml.parse(b'<Delete xmlns=\"x\"><Quiet>true</Quiet></Delete>', 'Delete'))\n"
        "print(s3xml._esc('a&<b>'), s3xml.escape('x<y'))\n"
        "try:\n"
        "    s3xml.parse(b'<Delete><unclosed></Delete>', 'Delete')\n"
        "except errors.MalformedXML:\n"
        "    print('MalformedXML')\n"
    )
    assert out.splitlines() == ["{'Quiet': 'true'}", "a&amp;&lt;b&gt; x&lt;y", "MalformedXML"]


def test_tune_malloc_applies_on_glibc() -> None:
    from s3serve.cli import tune_malloc

    applied = tune_malloc(2)
    # glibc's mallopt answers 1 on success; other C libraries have no mallopt (False, no error).
    assert applied is (platform.libc_ver()[0] == "glibc")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_socket_read_buffers_come_from_the_heap_not_mmap() -> None:
    # asyncio's 256 KiB read buffer, allocated on every socket read: over glibc's starting mmap
    # threshold, each was an mmap + mremap + munmap (mallinfo2's hblks counts mmapped blocks).
    out = _fresh_python(
        "import ctypes, sys\n"
        "from s3serve.cli import tune_malloc\n"
        "class Info(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in 'arena ordblks smblks hblks hblkhd usmblks fsmblks"
        " uordblks fordblks keepcost'.split()]\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.mallinfo2.restype = Info\n"
        "def mmapped(size):\n"
        "    before = libc.mallinfo2().hblks\n"
        "    block = bytes(size)\n"
        "    return libc.mallinfo2().hblks - before\n"
        "print(mmapped(256 * 1024))\n"
        "assert tune_malloc()\n"
        "print(mmapped(256 * 1024), mmapped(4 * 1024 * 1024))\n"
    )
    assert out.split() == ["1", "0", "1"]


UPSTREAM = ["--upstream", "http://127.0.0.1:9100", "--upstream-access-key", "uk", "--upstream-secret-key", "us"]


def test_upstream_cache_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(_a_certificate(tmp_path))
    config = _config(
        ["serve", str(tmp_path), "--upstream", "https://minio.test:9000/", "--upstream-access-key", "uk",
         "--upstream-secret-key", "us", "--upstream-region", "eu-west-1", "--upstream-ca", str(ca),
         "--cache-size", "2TiB", "--cache-revalidate", "30s", "--cache-evict-interval", "2m",
         "--upstream-session-token", "tok"]
    )
    assert config.upstream_session_token == "tok"
    assert (config.upstream, config.upstream_access_key, config.upstream_secret_key) == ("https://minio.test:9000", "uk", "us")
    assert (config.upstream_region, config.upstream_ca, config.upstream_verify) == ("eu-west-1", ca, True)
    assert (config.cache_size, config.cache_revalidate, config.cache_evict_interval) == (2 * 1024**4, 30.0, 120.0)
    assert _config(["serve", str(tmp_path), *UPSTREAM, "--cache-size", "1.5GB"]).cache_size == 3 * 1024**3 // 2


def test_upstream_profile_instead_of_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = tmp_path / "aws-config"
    config_file.write_text("[profile up]\naws_access_key_id = pk\naws_secret_access_key = ps\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    base = ["serve", str(tmp_path), "--upstream", "https://s3.test"]
    config = _config([*base, "--upstream-profile", "up"])
    assert (config.upstream_profile, config.upstream_access_key, config.upstream_secret_key) == ("up", "", "")
    with pytest.raises(SystemExit) as both:
        _config([*base, "--upstream-profile", "up", "--upstream-access-key", "k", "--upstream-secret-key", "s"])
    assert "not both" in str(both.value.code)
    with pytest.raises(SystemExit) as neither:
        _config(base)
    assert "--upstream-profile" in str(neither.value.code)


def test_upstream_cache_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ROOT": str(tmp_path), "UPSTREAM": "http://[::1]:9100", "UPSTREAM_ACCESS_KEY": "env-uk",
        "UPSTREAM_SECRET_KEY": "env-us", "UPSTREAM_REGION": "ap-south-1", "UPSTREAM_NO_VERIFY": "1",
        "UPSTREAM_SESSION_TOKEN": "env-token",
        "CACHE_SIZE": "50GiB", "CACHE_REVALIDATE": "1h", "CACHE_EVICT_INTERVAL": "10s",
    }.items():
        monkeypatch.setenv(f"S3SERVE_{name}", value)
    config = _config(["serve"])
    assert (config.upstream, config.upstream_access_key, config.upstream_secret_key) == ("http://[::1]:9100", "env-uk", "env-us")
    assert (config.upstream_region, config.upstream_verify, config.upstream_session_token) == ("ap-south-1", False, "env-token")
    assert (config.cache_size, config.cache_revalidate, config.cache_evict_interval) == (50 * 1024**3, 3600.0, 10.0)
    ca = tmp_path / "ca.pem"
    ca.write_text(_a_certificate(tmp_path))
    monkeypatch.setenv("S3SERVE_UPSTREAM_CA", str(ca))
    monkeypatch.setenv("S3SERVE_UPSTREAM_NO_VERIFY", "false")  # false is false, not "set"
    config = _config(["serve"])
    assert (config.upstream_ca, config.upstream_verify) == (ca, True)


def _a_certificate(tmp_path: Path) -> str:
    from s3serve.tls import self_signed

    cert, _ = self_signed(tmp_path / "tls", ["localhost"])
    return cert.read_text()


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["--upstream", "http://h:9000/bucket"], {}, "--upstream"),
        (["--upstream", "http://user:pw@h:9000"], {}, "--upstream"),
        (["--upstream", "http://h:port"], {}, "--upstream"),
        (["--upstream", "ftp://h"], {}, "--upstream"),
        (["--cache-size", "abc"], {}, "--cache-size"),
        (["--upstream-session-token", "token\n"], {}, "--upstream-session-token"),
        ([], {"S3SERVE_UPSTREAM_SESSION_TOKEN": "tok\r\nen"}, "--upstream-session-token"),
        (["--cache-size=-5"], {}, "--cache-size"),
        (["--cache-revalidate=-1s"], {}, "--cache-revalidate"),
        (["--cache-evict-interval", "xyz"], {}, "--cache-evict-interval"),
        (["--cache-evict-interval", "0"], {}, "--cache-evict-interval"),
        (["--cache-evict-interval=-1m"], {}, "--cache-evict-interval"),
        (["--upstream-ca", "/nonexistent/ca.pem"], {}, "--upstream-ca"),
        (["--upstream-ca", "/etc/hostname"], {}, "--upstream-ca"),
        (["--upstream-ca", "/etc/hostname", "--upstream-no-verify"], {}, "--upstream-no-verify"),
        ([], {"S3SERVE_CACHE_SIZE": "lots"}, "--cache-size"),
        ([], {"S3SERVE_CACHE_REVALIDATE": "-5"}, "--cache-revalidate"),
        ([], {"S3SERVE_UPSTREAM_NO_VERIFY": "maybe"}, "S3SERVE_UPSTREAM_NO_VERIFY"),
        ([], {"S3SERVE_WORKERS": "two"}, "--workers"),
        (["--gc-interval", "0"], {}, "--gc-interval"),
    ],
)
def test_bad_values_are_refused_in_one_line(
    argv: list[str], env: dict[str, str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    extra = [] if "--upstream" in argv else UPSTREAM
    with pytest.raises(SystemExit) as refused:
        _config(["serve", str(tmp_path), *extra, *argv])
    message = str(refused.value.code)
    assert message.startswith("s3serve serve: ") and says in message and "\n" not in message, message
    assert "pw@" not in message  # a password in a URL is not echoed into logs


@pytest.mark.parametrize(("argv", "env"), [(["--log-level", "loud"], {}), ([], {"S3SERVE_LOG_LEVEL": "verbose"})])
def test_an_unknown_log_level_is_refused_before_serving(
    argv: list[str], env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as refused:
        cli.main(["serve", str(tmp_path / "root"), "--address", "127.0.0.1:0", *argv])
    message = str(refused.value.code)
    assert message.startswith("s3serve serve: --log-level must be") and "\n" not in message, message
    assert not (tmp_path / "root").exists()  # refused before anything was made


def test_log_levels_by_name() -> None:
    import logging

    assert [cli.log_level(name) for name in ("debug", "INFO", " warning", "Error")] == [
        logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
    ]  # fmt: skip


def test_the_banner_shows_the_port_bound_and_never_the_upstream_secret(tmp_path: Path) -> None:
    import subprocess
    import sys

    secret = "upstream-secret-XYZZY"
    done = subprocess.Popen(
        [sys.executable, "-m", "s3serve", "serve", str(tmp_path / "root"), "--address", "127.0.0.1:0",
         *UPSTREAM[:-1], secret],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert done.stdout is not None
        banner = [done.stdout.readline() for _ in range(7)]
    finally:
        done.terminate()
        done.wait(timeout=10)
        if done.stdout is not None:
            done.stdout.close()
    endpoint = next(line for line in banner if "Endpoint:" in line)
    assert not endpoint.rstrip().endswith(":0"), banner
    assert secret not in "".join(banner), banner


CACHE_ONLY = [
    ["--upstream-access-key", "uk"],
    ["--upstream-secret-key", "us"],
    ["--upstream-session-token", "tok"],
    ["--upstream-region", "eu-west-1"],
    ["--upstream-ca", "/etc/ssl/ca.pem"],
    ["--upstream-no-verify"],
    ["--cache-size", "50GiB"],
    ["--cache-revalidate", "30s"],
    ["--cache-evict-interval", "1m"],
]


@pytest.mark.parametrize("option", CACHE_ONLY, ids=lambda option: option[0])
def test_a_cache_option_without_upstream_is_refused_in_one_line(option: list[str], tmp_path: Path) -> None:
    # A forgotten or mistyped --upstream would otherwise start a plain server where a cache was meant.
    with pytest.raises(SystemExit) as refused:
        _config(["serve", str(tmp_path), *option])
    message = str(refused.value.code)
    assert message.startswith("s3serve serve: ") and "\n" not in message, message
    assert option[0] in message and "--upstream URL" in message, message
    assert "tok" not in message.replace("token", "")  # the value (a credential, maybe) is not echoed


def test_every_cache_option_given_without_upstream_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as refused:
        _config(["serve", str(tmp_path), "--cache-size", "1GiB", "--upstream-region", "x"])
    message = str(refused.value.code)
    assert "--cache-size" in message and "--upstream-region" in message and "them out" in message, message


def test_cache_variables_without_upstream_are_ignored_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Variables may be left in an environment shared with a cache, or the cache switched off by
    unsetting S3SERVE_UPSTREAM alone: the plain server starts, and says what it ignores, without
    checking values that nothing uses (a bad one would otherwise stop it)."""
    env = {
        "S3SERVE_UPSTREAM_ACCESS_KEY": "uk", "S3SERVE_UPSTREAM_SECRET_KEY": "us",
        "S3SERVE_UPSTREAM_SESSION_TOKEN": "tok\nen", "S3SERVE_UPSTREAM_REGION": "eu-west-1",
        "S3SERVE_UPSTREAM_CA": "/nonexistent/ca.pem", "S3SERVE_UPSTREAM_NO_VERIFY": "1",
        "S3SERVE_CACHE_SIZE": "lots", "S3SERVE_CACHE_REVALIDATE": "-5", "S3SERVE_CACHE_EVICT_INTERVAL": "0",
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level("WARNING", logger="s3serve"):
        config = _config(["serve", str(tmp_path)])
    assert config.upstream is None and config.cache_size is None and config.upstream_ca is None
    assert (config.cache_revalidate, config.cache_evict_interval, config.upstream_verify) == (0.0, 60.0, True)
    assert (config.upstream_access_key, config.upstream_session_token, config.upstream_region) == ("", None, None)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert all(name in warning for name in env) and "ignored" in warning and "\n" not in warning, warning
    assert "tok" not in warning.replace("TOKEN", "")  # names, never values


def test_a_cache_option_typed_beside_its_variable_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3SERVE_CACHE_SIZE", "1GiB")
    with pytest.raises(SystemExit) as refused:
        _config(["serve", str(tmp_path), "--cache-size", "2GiB"])
    assert "--cache-size" in str(refused.value.code)


def test_no_warning_and_the_cache_defaults_without_any_cache_setting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="s3serve"):
        config = _config(["serve", str(tmp_path)])
    assert not caplog.records
    assert (config.cache_revalidate, config.cache_evict_interval) == (0.0, 60.0)
    with_upstream = _config(["serve", str(tmp_path), *UPSTREAM])
    assert (with_upstream.cache_revalidate, with_upstream.cache_evict_interval) == (0.0, 60.0)


def test_the_command_exits_with_the_one_line_and_no_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "s3serve", "serve", str(tmp_path / "root"), "--address", "127.0.0.1:0", "--cache-size", "1GiB"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and not done.stdout, done
    assert done.stderr.startswith("s3serve serve: --cache-size only applies to the upstream cache"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "root").exists()  # refused before anything was made
