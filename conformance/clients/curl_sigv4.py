"""curl's own SigV4 signer (``curl --aws-sigv4 "aws:amz:REGION:s3" --user KEY:SECRET``), as shell
scripts and CI jobs use it for quick uploads and downloads: every request below is one curl
command, and what comes back is compared with the bytes, headers and listings expected.

curl's signer is minimal, and the steps show how users work with it. The installed curl 7.88
(Debian 12) signs every ``-H`` header but sends no ``x-amz-content-sha256`` (which S3 requires),
so the workflow passes one itself: UNSIGNED-PAYLOAD, or the payload's SHA-256, which curl then
signs as the payload hash. It signs the path and the query exactly as typed (curl#9717: no
sorting, no re-encoding), so URLs are written in SigV4's canonical form: keys and query values
percent-encoded with upper-case hex, parameters sorted. Two steps check that a request signed
otherwise is refused as AWS refuses it (and passes once a newer curl does the work itself)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from conformance.clients.common import (
    Endpoint,
    MiB,
    Recorder,
    Skip,
    StepFailed,
    expect,
    expect_equal,
    make_file,
    md5_file,
)

ep = Endpoint.from_env()
rec = Recorder("curl_sigv4")
W = ep.workdir
B = ep.bucket("curl")
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "CURL_HOME"):
    os.environ.pop(var, None)
os.environ["HOME"] = str(W)  # no ~/.curlrc of the developer's (and -q below)


@dataclass
class Resp:
    status: int
    headers: dict[str, str]  # lower-case names of the final response
    body: bytes
    sent: dict[str, str] = field(default_factory=dict)  # request headers curl sent (lower-case), from -v
    request_line: str = ""
    exit_code: int = 0
    stderr: str = ""

    def code(self) -> str:
        m = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return m.group(1).decode() if m else ""

    def text(self) -> str:
        return self.body.decode(errors="replace")

    def describe(self) -> str:
        return f"{self.request_line} -> {self.status}\n{self.text()[:1500]}\n{self.stderr[-800:]}"


def enc(key: str) -> str:
    """A key as a path, encoded as SigV4's canonical URI has it (unreserved characters and '/'
    kept, everything else %XX in upper case), so that curl's as-typed signature is the right one."""
    return quote(key, safe="/~")


def qs(params: dict[str, str]) -> str:
    """A query string in canonical form: names sorted, names and values fully encoded."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(params.items()))


def curl(
    url: str,
    *args: str,
    method: str | None = None,
    sha: str | None = UNSIGNED,
    headers: tuple[str, ...] = (),
    secret: str | None = None,
    access: str | None = None,
    out: Path | None = None,
    timeout: float = 300,
    sign: bool = True,
) -> Resp:
    """One curl command signed by curl's own SigV4 (``sha``: the x-amz-content-sha256 value to
    send, None to send none, as curl 7.88 does by itself)."""
    hfile = W / ".curl-headers"
    bfile = out or W / ".curl-body"
    for f in (hfile, bfile):
        f.unlink(missing_ok=True)
    argv = ["curl", "-q", "-sS", "-v", "--noproxy", "*", "--max-time", str(int(timeout)), "-D", str(hfile),
            "-o", str(bfile), "-w", "%{http_code}"]
    if sign:
        argv += ["--aws-sigv4", f"aws:amz:{ep.region}:s3",
                 "--user", f"{access or ep.access_key}:{secret or ep.secret_key}"]
    if method:
        argv += ["-X", method]
    if sha is not None:
        argv += ["-H", f"x-amz-content-sha256: {sha}"]
    for h in headers:
        argv += ["-H", h]
    argv += [*args, url]
    p = subprocess.run(argv, capture_output=True, timeout=timeout + 30, stdin=subprocess.DEVNULL)
    err = p.stderr.decode(errors="replace")
    sent: dict[str, str] = {}
    request_line = ""
    for line in err.splitlines():
        if line.startswith("> "):
            h = line[2:]
            if not request_line:
                request_line = h
            elif ":" in h:
                k, _, v = h.partition(":")
                sent[k.strip().lower()] = v.strip()
    status = int(p.stdout.decode() or 0) if p.stdout.decode().isdigit() else 0
    resp_headers: dict[str, str] = {}
    if hfile.exists():
        # -D writes every response (100 Continue first): keep the last block.
        blocks = [b for b in hfile.read_text(errors="replace").split("\r\n\r\n") if b.strip()]
        for line in (blocks[-1].splitlines()[1:] if blocks else []):
            k, _, v = line.partition(":")
            resp_headers[k.strip().lower()] = v.strip()
    body = bfile.read_bytes() if bfile.exists() and out is None else b""
    return Resp(status, resp_headers, body, sent, request_line, p.returncode, err)


def url(key: str = "", bucket: str = B, base: str | None = None) -> str:
    return f"{base or ep.url}/{bucket}" + (f"/{enc(key)}" if key else "")


def ok(r: Resp, status: int = 200, what: str = "") -> Resp:
    if r.status != status:
        raise StepFailed(f"{what or r.request_line}: expected HTTP {status}, got {r.status} (curl exit {r.exit_code})\n"
                         + r.describe())
    return r


def refused(r: Resp, status: int, code: str, what: str) -> None:
    if r.status != status or r.code() != code:
        raise StepFailed(f"{what}: expected {status} {code}, got {r.status} {r.code()!r}\n" + r.describe())


def xml(r: Resp) -> ET.Element:
    return ET.fromstring(r.body)


def list_v2(params: dict[str, str], bucket: str = B) -> tuple[list[str], list[str], ET.Element]:
    """One ListObjectsV2 page: keys, common prefixes, the document."""
    r = ok(curl(f"{url(bucket=bucket)}?{qs({'list-type': '2', **params})}"), what=f"ListObjectsV2 {params}")
    doc = xml(r)
    keys = [k.text or "" for k in doc.iter(f"{NS}Key")]
    prefixes = [c.findtext(f"{NS}Prefix") or "" for c in doc.iter(f"{NS}CommonPrefixes")]
    return keys, prefixes, doc


def list_all(prefix: str = "", bucket: str = B, page: int = 1000) -> list[str]:
    keys: list[str] = []
    params = {"prefix": prefix, "max-keys": str(page)}
    while True:
        got, _, doc = list_v2(params, bucket)
        keys += got
        if doc.findtext(f"{NS}IsTruncated") != "true":
            return keys
        params["continuation-token"] = doc.findtext(f"{NS}NextContinuationToken") or ""


def put_bytes(key: str, data: bytes, *hdrs: str, bucket: str = B) -> Resp:
    f = W / ".upload"
    f.write_bytes(data)
    return ok(curl(url(key, bucket), "-T", str(f), headers=hdrs), what=f"PUT {key!r}")


def get_bytes(key: str, bucket: str = B) -> bytes:
    return ok(curl(url(key, bucket)), what=f"GET {key!r}").body


def sigv4(method: str, path: str, query: str, sent: dict[str, str], secret: str) -> str:
    """The signature of a request as curl sent it, with ``path``/``query`` as the canonical URI
    and query: to tell which canonical request curl signed."""
    auth = sent.get("authorization", "")
    m = re.search(r"Credential=[^/]+/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+)", auth)
    if not m:
        raise StepFailed(f"no SigV4 Authorization header in curl's request: {auth!r}")
    date, region, service, signed = m.groups()
    names = signed.split(";")
    headers = "".join(f"{n}:{' '.join(sent.get(n, '').split())}\n" for n in names)
    creq = "\n".join([method, path, query, headers, signed, sent.get("x-amz-content-sha256", EMPTY_SHA256)])
    amz_date = sent.get("x-amz-date", "")
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{date}/{region}/{service}/aws4_request",
                     hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def curl_signature(r: Resp) -> str:
    m = re.search(r"Signature=([0-9a-f]{64})", r.sent.get("authorization", ""))
    return m.group(1) if m else ""


# -- the workflow --------------------------------------------------------------------------------

version = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
# "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.19 zlib/...": name, libcurl, TLS.
rec.version(" ".join(w for i, w in enumerate(version.split()[:5]) if i != 2))


@rec.step("curl has --aws-sigv4 (7.75+)")
def _() -> None:
    m = re.match(r"curl (\d+)\.(\d+)\.(\d+)", version)
    expect(m is not None, f"curl --version: {version[:200]}")
    assert m is not None
    expect((int(m.group(1)), int(m.group(2))) >= (7, 75), f"curl {m.group(0)} predates --aws-sigv4 (7.75)")
    help_text = subprocess.run(["curl", "--help", "all"], capture_output=True, text=True).stdout
    expect("--aws-sigv4" in help_text, "curl --help all does not list --aws-sigv4")


MB_STEP = "create bucket (PUT /bucket with Content-Length: 0)"


@rec.step(MB_STEP)
def _() -> None:
    # curl -X PUT sends no Content-Length for an empty body; see the next step.
    r = ok(curl(url(), method="PUT", headers=("Content-Length: 0",)))
    expect(r.headers.get("location", "").endswith(B), f"Location: {r.headers.get('location')!r}")
    ok(curl(url(), "-I"), what="HEAD bucket")
    names = [n.text for n in xml(ok(curl(f"{ep.url}/"), what="ListBuckets")).iter(f"{NS}Name")]
    expect(B in names, f"{B} not in ListBuckets: {names}")


MB = [MB_STEP]


@rec.step("create bucket with curl -X PUT as typed (no Content-Length)")
def _() -> None:
    b2 = ep.bucket("curl-nolength")
    r = curl(url(bucket=b2), method="PUT")
    expect("content-length" not in r.sent, f"curl sent Content-Length: {r.sent}")
    # AWS creates the bucket: CreateBucket has no required body (moto#6179, localstack#8082).
    ok(r, what="CreateBucket without Content-Length")
    ok(curl(url(bucket=b2), method="DELETE"), 204, "DELETE the bucket")


SMALL = b"hello from curl --aws-sigv4\n"


@rec.step("a request without x-amz-content-sha256 (as curl 7.88 sends it) is refused as AWS does", needs=MB)
def _() -> None:
    f = W / "plain.txt"
    f.write_bytes(SMALL)
    r = curl(url("no-sha/plain.txt"), "-T", str(f), sha=None)
    if "x-amz-content-sha256" in r.sent:
        # A curl that sends it by itself (UNSIGNED-PAYLOAD for service s3): plain uploads work.
        ok(r, what="PUT with curl's own x-amz-content-sha256")
        expect_equal(get_bytes("no-sha/plain.txt"), SMALL, "object uploaded without -H x-amz-content-sha256")
        ok(curl(url("no-sha/plain.txt"), method="DELETE"), 204)
        return
    # S3 requires the header on every SigV4 request; this is AWS's answer word for word
    # (curl#8810: "R2 ... requires x-amz-content-sha256 to be present on every request").
    refused(r, 400, "InvalidRequest", "PUT without x-amz-content-sha256")
    expect("Missing required header for this request: x-amz-content-sha256" in r.text(), r.text())
    refused(curl(url("no-sha/plain.txt"), sha=None), 400, "InvalidRequest", "GET without x-amz-content-sha256")
    refused(curl(url("no-sha/plain.txt")), 404, "NoSuchKey", "the refused PUT stored nothing")


BIG = W / "upload.bin"
BIG_MD5 = make_file(BIG, 3 * MiB + 777, seed=75)
META = ("x-amz-meta-author: Jane Doe", "X-Amz-Meta-Mixed-Case: Value", "x-amz-meta-note: two  spaces inside",
        "Content-Type: text/csv; charset=utf-8", "Cache-Control: max-age=60")


@rec.step("PUT -T (3 MiB, Expect: 100-continue) with Content-Type, Cache-Control and x-amz-meta-* (-H, signed)",
          needs=MB)
def _() -> None:
    r = ok(curl(url("dir/upload.bin"), "-T", str(BIG), headers=META))
    expect_equal(r.headers.get("etag"), f'"{BIG_MD5}"', "ETag (MD5 of the bytes)")
    signed = re.search(r"SignedHeaders=([^,]+)", r.sent.get("authorization", ""))
    names = signed.group(1).split(";") if signed else []
    for h in ("content-type", "x-amz-meta-author", "x-amz-meta-mixed-case", "x-amz-content-sha256"):
        expect(h in names, f"curl did not sign {h}: SignedHeaders={names}")
    expect("100-continue" in r.sent.get("expect", ""), f"curl sent no Expect: 100-continue: {r.sent}")


PUT = ["PUT -T (3 MiB, Expect: 100-continue) with Content-Type, Cache-Control and x-amz-meta-* (-H, signed)"]


@rec.step("GET -o: the same bytes", needs=PUT)
def _() -> None:
    down = W / "download.bin"
    r = ok(curl(url("dir/upload.bin"), out=down))
    expect_equal(md5_file(down), BIG_MD5, "MD5 of the download")
    expect_equal(r.headers.get("content-length"), str(BIG.stat().st_size), "Content-Length")


@rec.step("HEAD -I: Content-Length, ETag = MD5, Content-Type, Cache-Control, metadata", needs=PUT)
def _() -> None:
    r = ok(curl(url("dir/upload.bin"), "-I"))
    h = r.headers
    expect_equal(h.get("content-length"), str(BIG.stat().st_size), "Content-Length")
    expect_equal(h.get("etag"), f'"{BIG_MD5}"', "ETag")
    expect_equal(h.get("content-type"), "text/csv; charset=utf-8", "Content-Type")
    expect_equal(h.get("cache-control"), "max-age=60", "Cache-Control")
    expect_equal(h.get("x-amz-meta-author"), "Jane Doe", "x-amz-meta-author")
    expect_equal(h.get("x-amz-meta-mixed-case"), "Value", "x-amz-meta-mixed-case (names are lower-cased)")
    # The value curl signed with the inner spaces collapsed (SigV4's canonical form); stored as sent.
    expect_equal(" ".join(h.get("x-amz-meta-note", "").split()), "two spaces inside", "x-amz-meta-note")
    refused(curl(url("dir/missing.bin"), "-I"), 404, "", "HEAD of a missing key")


@rec.step("ranged GET (-r 1000-1999, -r -500, a range past the end)", needs=PUT)
def _() -> None:
    data = BIG.read_bytes()
    r = ok(curl(url("dir/upload.bin"), "-r", "1000-1999"), 206)
    expect_equal(r.body, data[1000:2000], "bytes 1000-1999")
    expect_equal(r.headers.get("content-range"), f"bytes 1000-1999/{len(data)}", "Content-Range")
    r = ok(curl(url("dir/upload.bin"), "-r", "-500"), 206)
    expect_equal(r.body, data[-500:], "the last 500 bytes")
    refused(curl(url("dir/upload.bin"), "-r", f"{len(data) + 10}-"), 416, "InvalidRange", "a range past the end")


@rec.step("x-amz-content-sha256 = the payload's SHA-256 (signed payload); a wrong one refused", needs=MB)
def _() -> None:
    f = W / "signed.bin"
    data = os.urandom(200_000)
    f.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    r = ok(curl(url("signed/payload.bin"), "-T", str(f), sha=sha), what="PUT with the SHA-256")
    expect_equal(r.headers.get("etag"), f'"{hashlib.md5(data).hexdigest()}"', "ETag")
    # A GET signs the empty payload's hash rather than UNSIGNED-PAYLOAD: both are S3's.
    expect_equal(ok(curl(url("signed/payload.bin"), sha=EMPTY_SHA256)).body, data, "GET signed with the empty hash")
    wrong = hashlib.sha256(b"something else").hexdigest()
    refused(curl(url("signed/wrong.bin"), "-T", str(f), sha=wrong), 400, "XAmzContentSHA256Mismatch",
            "PUT with another body's SHA-256")
    refused(curl(url("signed/wrong.bin")), 404, "NoSuchKey", "the refused PUT stored nothing")
    refused(curl(url("signed/wrong.bin"), "-T", str(f), sha="not-a-hash"), 400, "InvalidArgument",
            "x-amz-content-sha256 that is no hash")


ODD_KEYS = {
    "odd/with space.txt": b"space\n",
    "odd/plus+sign.txt": b"plus\n",
    "odd/percent%2Fslash.txt": b"a literal %2F in the key\n",
    "odd/100% sure.txt": b"percent\n",
    "odd/\u00e9t\u00e9 \u2603.txt": b"non-ASCII\n",
    "odd/a=b&c=d.txt": b"equals and ampersand\n",
    "odd/tilde~under_score-dot.txt": b"unreserved\n",
    "odd/sub dir/deeper/file.txt": b"nested\n",
}


@rec.step("keys needing URL encoding in the path (space, +, %2F, %, non-ASCII, =&): PUT, GET, listed", needs=MB)
def _() -> None:
    for key, data in ODD_KEYS.items():
        put_bytes(key, data)
    for key, data in ODD_KEYS.items():
        expect_equal(get_bytes(key), data, f"GET {key!r}")
    expect_equal(sorted(list_all("odd/")), sorted(ODD_KEYS), "keys listed under odd/")


ODD = ["keys needing URL encoding in the path (space, +, %2F, %, non-ASCII, =&): PUT, GET, listed"]


@rec.step("ListObjectsV2: prefix/delimiter with spaces, +, %, non-ASCII, = in the query; encoding-type=url",
          needs=ODD)
def _() -> None:
    keys, prefixes, _ = list_v2({"prefix": "odd/", "delimiter": "/"})
    expect_equal(sorted(keys), sorted(k for k in ODD_KEYS if k.count("/") == 1), "keys at odd/ (delimiter /)")
    expect_equal(prefixes, ["odd/sub dir/"], "CommonPrefixes")
    for prefix in ("odd/with sp", "odd/plus+", "odd/percent%2F", "odd/100%", "odd/\u00e9t\u00e9 \u2603", "odd/a=b&"):
        got, _, doc = list_v2({"prefix": prefix})
        expect_equal(got, [k for k in sorted(ODD_KEYS) if k.startswith(prefix)], f"keys with prefix {prefix!r}")
        expect_equal(doc.findtext(f"{NS}Prefix"), prefix, "Prefix echoed")
    keys, prefixes, _ = list_v2({"prefix": "odd/sub dir/", "delimiter": "deeper"})
    expect_equal((keys, prefixes), ([], ["odd/sub dir/deeper"]), "a multi-character delimiter")
    # encoding-type=url: keys come back percent-encoded (as in the key), to be decoded by the client.
    keys, _, doc = list_v2({"prefix": "odd/with", "encoding-type": "url"})
    expect_equal(doc.findtext(f"{NS}EncodingType"), "url", "EncodingType")
    expect(keys and keys[0].replace("+", "%20") in ("odd/with%20space.txt",), f"url-encoded key: {keys}")


@rec.step("ListObjectsV2 pages of 3: continuation-token passed back percent-encoded; start-after", needs=ODD)
def _() -> None:
    keys = list_all("odd/", page=3)
    expect_equal(keys, sorted(ODD_KEYS), "all keys over pages of 3")
    _, _, doc = list_v2({"prefix": "odd/", "max-keys": "3", "start-after": "odd/plus+sign.txt"})
    expect_equal([k.text for k in doc.iter(f"{NS}Key")], [k for k in sorted(ODD_KEYS) if k > "odd/plus+sign.txt"][:3],
                 "start-after")


@rec.step("GET with response-content-disposition/-type overrides (quoted, spaced values in the query)",
          needs=ODD)
def _() -> None:
    params = {"response-content-disposition": 'attachment; filename="with space.txt"',
              "response-content-type": "text/plain; charset=utf-8"}
    r = ok(curl(f"{url('odd/with space.txt')}?{qs(params)}"))
    expect_equal(r.body, ODD_KEYS["odd/with space.txt"], "bytes")
    expect_equal(r.headers.get("content-disposition"), params["response-content-disposition"], "Content-Disposition")
    expect_equal(r.headers.get("content-type"), params["response-content-type"], "Content-Type")


@rec.step("curl signs the query as typed (curl#9717): unsorted or unencoded parameters refused as by AWS",
          needs=ODD)
def _() -> None:
    base = url()
    path = urlsplit(base).path
    spec = qs({"delimiter": "/", "list-type": "2", "prefix": "odd/"})
    for typed in ("list-type=2&prefix=odd%2F&delimiter=%2F", "delimiter=/&list-type=2&prefix=odd/"):
        r = curl(f"{base}?{typed}")
        signature = curl_signature(r)
        if signature == sigv4("GET", path, spec, r.sent, ep.secret_key):
            ok(r, what=f"{typed} (curl canonicalised the query)")
            continue
        expect_equal(signature, sigv4("GET", path, typed, r.sent, ep.secret_key),
                     f"curl's signature of ?{typed} (neither the canonical nor the typed query)")
        # SigV4 signs the sorted, fully encoded query; AWS refuses curl's signature of the typed one.
        refused(r, 403, "SignatureDoesNotMatch", f"?{typed}")
        creq = xml(r).findtext("CanonicalRequest") or ""
        expect(creq.split("\n")[2:3] == [spec], f"the server's canonical query is not {spec!r}: {creq[:300]!r}")


@rec.step("copy: x-amz-copy-source (encoded key), COPY and REPLACE metadata directives", needs=PUT + ODD)
def _() -> None:
    src = f"/{B}/{enc('dir/upload.bin')}"
    r = ok(curl(url("copies/same meta.bin"), method="PUT", headers=(f"x-amz-copy-source: {src}",)))
    expect_equal(xml(r).findtext(f"{NS}ETag"), f'"{BIG_MD5}"', "CopyObjectResult ETag")
    h = ok(curl(url("copies/same meta.bin"), "-I")).headers
    expect_equal((h.get("x-amz-meta-author"), h.get("content-type")), ("Jane Doe", "text/csv; charset=utf-8"),
                 "metadata copied (COPY)")
    ok(curl(url("copies/new meta.bin"), method="PUT",
            headers=(f"x-amz-copy-source: {src}", "x-amz-metadata-directive: REPLACE",
                     "x-amz-meta-stage: copied", "Content-Type: application/x-copied")))
    h = ok(curl(url("copies/new meta.bin"), "-I")).headers
    expect_equal((h.get("x-amz-meta-stage"), h.get("x-amz-meta-author"), h.get("content-type")),
                 ("copied", None, "application/x-copied"), "metadata replaced (REPLACE)")
    down = W / "copy.bin"
    ok(curl(url("copies/new meta.bin"), out=down))
    expect_equal(md5_file(down), BIG_MD5, "copied bytes")
    # A source key with a space, a plus and non-ASCII, percent-encoded in the header.
    odd = "odd/\u00e9t\u00e9 \u2603.txt"
    ok(curl(url("copies/odd.txt"), method="PUT", headers=(f"x-amz-copy-source: {B}/{enc(odd)}",)))
    expect_equal(get_bytes("copies/odd.txt"), ODD_KEYS[odd], "copy of a non-ASCII key")
    refused(curl(url("copies/x"), method="PUT", headers=(f"x-amz-copy-source: /{B}/no-such-key",)),
            404, "NoSuchKey", "copy of a missing key")


@rec.step("multipart upload by hand (POST ?uploads=, PUT ?partNumber&uploadId, POST ?uploadId), none left",
          needs=MB)
def _() -> None:
    key = "multi/hand made.bin"
    part1, part2 = os.urandom(5 * MiB), os.urandom(MiB + 1234)
    r = ok(curl(f"{url(key)}?uploads=", method="POST", headers=("Content-Type: application/x-parts",)))
    upload_id = xml(r).findtext(f"{NS}UploadId") or ""
    expect(upload_id != "", f"no UploadId: {r.text()[:300]}")
    # The upload is listed while in progress.
    uploads = [u.findtext(f"{NS}UploadId") for u in xml(ok(curl(f"{url()}?uploads="))).iter(f"{NS}Upload")]
    expect(upload_id in uploads, f"{upload_id} not in ListMultipartUploads: {uploads}")
    etags = []
    for n, data in ((1, part1), (2, part2)):
        f = W / f".part{n}"
        f.write_bytes(data)
        r = ok(curl(f"{url(key)}?{qs({'partNumber': str(n), 'uploadId': upload_id})}", "-T", str(f),
                    sha=hashlib.sha256(data).hexdigest()), what=f"UploadPart {n}")
        expect_equal(r.headers.get("etag"), f'"{hashlib.md5(data).hexdigest()}"', f"part {n} ETag")
        etags.append(r.headers["etag"])
    listed = [p.findtext(f"{NS}PartNumber") for p in
              xml(ok(curl(f"{url(key)}?{qs({'uploadId': upload_id})}"))).iter(f"{NS}Part")]
    expect_equal(listed, ["1", "2"], "ListParts")
    doc = "<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1)
    ) + "</CompleteMultipartUpload>"
    body = doc.encode()
    r = ok(curl(f"{url(key)}?{qs({'uploadId': upload_id})}", "--data-binary", doc,
                sha=hashlib.sha256(body).hexdigest(), headers=("Content-Type: application/xml",)),
           what="CompleteMultipartUpload")
    composite = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)).hexdigest()
    expect_equal(xml(r).findtext(f"{NS}ETag"), f'"{composite}-2"', "multipart ETag")
    expect_equal(get_bytes(key), part1 + part2, "the assembled object")
    expect_equal(ok(curl(url(key), "-I")).headers.get("content-type"), "application/x-parts", "Content-Type")
    left = [u.findtext(f"{NS}Key") for u in xml(ok(curl(f"{url()}?uploads="))).iter(f"{NS}Upload")]
    expect_equal(left, [], "uploads left in ListMultipartUploads")
    # An aborted upload leaves nothing either.
    r = ok(curl(f"{url('multi/aborted')}?uploads=", method="POST"))
    aborted = xml(r).findtext(f"{NS}UploadId") or ""
    ok(curl(f"{url('multi/aborted')}?{qs({'uploadId': aborted})}", method="DELETE"), 204, "AbortMultipartUpload")
    expect_equal([u.findtext(f"{NS}Key") for u in xml(ok(curl(f"{url()}?uploads="))).iter(f"{NS}Upload")], [],
                 "uploads left after the abort")


@rec.step("DeleteObjects (POST ?delete= with Content-MD5 and the body's SHA-256)", needs=ODD)
def _() -> None:
    victims = ["odd/plus+sign.txt", "odd/a=b&c=d.txt", "odd/never-existed"]
    doc = "<Delete><Quiet>false</Quiet>" + "".join(
        f"<Object><Key>{k.replace('&', '&amp;')}</Key></Object>" for k in victims) + "</Delete>"
    body = doc.encode()
    r = ok(curl(f"{url()}?delete=", "--data-binary", doc, sha=hashlib.sha256(body).hexdigest(),
                headers=(f"Content-MD5: {b64encode(hashlib.md5(body).digest()).decode()}",
                         "Content-Type: application/xml")))
    deleted = sorted(d.findtext(f"{NS}Key") or "" for d in xml(r).iter(f"{NS}Deleted"))
    expect_equal(deleted, sorted(victims), "Deleted (a missing key counts as deleted)")
    for k in victims:
        ODD_KEYS.pop(k, None)
    expect_equal(sorted(list_all("odd/")), sorted(ODD_KEYS), "keys left under odd/")


@rec.step("DELETE an object (204), then GET 404 NoSuchKey; deleting it again is 204", needs=PUT)
def _() -> None:
    ok(curl(url("copies/same meta.bin"), method="DELETE"), 204)
    refused(curl(url("copies/same meta.bin")), 404, "NoSuchKey", "GET after DELETE")
    ok(curl(url("copies/same meta.bin"), method="DELETE"), 204, "DELETE of a missing key")


@rec.step("wrong secret: 403 SignatureDoesNotMatch (GET; PUT refused before its body, nothing stored)", needs=PUT)
def _() -> None:
    refused(curl(url("dir/upload.bin"), secret=ep.secret_key + "x"), 403, "SignatureDoesNotMatch", "GET")
    r = curl(url("dir/refused.bin"), "-T", str(BIG), secret="not-" + ep.secret_key)
    refused(r, 403, "SignatureDoesNotMatch", "PUT")
    # curl waited for 100 Continue and got the refusal instead: the 3 MiB were not sent.
    expect("HTTP/1.1 100" not in r.stderr, "the server asked for the body of a request it refuses")
    refused(curl(url("dir/refused.bin")), 404, "NoSuchKey", "the refused PUT stored nothing")
    refused(curl(url("dir/upload.bin"), access="NOSUCHKEY"), 403, "InvalidAccessKeyId", "unknown access key")
    refused(curl(url("dir/upload.bin"), sign=False, sha=None), 403, "AccessDenied", "unsigned GET")


@rec.step("https (--cacert): PUT -T, GET, HEAD; refused without the CA")
def _() -> None:
    if not ep.https_url:
        raise Skip("no https endpoint")
    tb = ep.bucket("curl-tls")
    cafile = ["--cacert", ep.ca_bundle] if ep.ca_bundle else ["--insecure"]
    ok(curl(url(bucket=tb, base=ep.https_url), *cafile, method="PUT", headers=("Content-Length: 0",)))
    r = ok(curl(url("over tls.bin", tb, ep.https_url), *cafile, "-T", str(BIG)))
    expect_equal(r.headers.get("etag"), f'"{BIG_MD5}"', "ETag over https")
    down = W / "tls.bin"
    ok(curl(url("over tls.bin", tb, ep.https_url), *cafile, out=down))
    expect_equal(md5_file(down), BIG_MD5, "bytes over https")
    if ep.ca_bundle:
        r = curl(url("over tls.bin", tb, ep.https_url), "-I")
        expect(r.exit_code == 60, f"without --cacert: curl exit {r.exit_code} (60 = certificate refused)\n{r.stderr[-300:]}")
    ok(curl(url("over tls.bin", tb, ep.https_url), *cafile, method="DELETE"), 204)
    ok(curl(url(bucket=tb, base=ep.https_url), *cafile, method="DELETE"), 204, "DELETE the https bucket")


@rec.step("virtual-host style (http://BUCKET.localhost:PORT/KEY, signed Host with the bucket)", needs=MB)
def _() -> None:
    if not ep.vhost_url:
        raise Skip("no virtual-host endpoint")
    vb = ep.bucket("curl-vhost")
    scheme, _, hostport = ep.vhost_url.partition("://")
    base = f"{scheme}://{vb}.{hostport}"
    # curl resolves *.localhost to the loopback itself.
    r = ok(curl(f"{base}/", method="PUT", headers=("Content-Length: 0",)), what="CreateBucket (virtual host)")
    expect_equal(r.sent.get("host"), f"{vb}.{hostport}", "Host header curl signed")
    ok(curl(f"{base}/{enc('v dir/key+1.txt')}", "-T", str(W / "plain.txt")), what="PUT (virtual host)")
    expect_equal(ok(curl(f"{base}/{enc('v dir/key+1.txt')}")).body, SMALL, "GET (virtual host)")
    doc = xml(ok(curl(f"{base}/?{qs({'list-type': '2', 'prefix': 'v dir/'})}")))
    expect_equal([k.text for k in doc.iter(f"{NS}Key")], ["v dir/key+1.txt"], "ListObjectsV2 (virtual host)")
    ok(curl(f"{base}/{enc('v dir/key+1.txt')}", method="DELETE"), 204)
    ok(curl(f"{base}/", method="DELETE"), 204, "DeleteBucket (virtual host)")


@rec.step("DELETE a non-empty bucket: 409 BucketNotEmpty", needs=MB)
def _() -> None:
    refused(curl(url(), method="DELETE"), 409, "BucketNotEmpty", "DELETE of a non-empty bucket")


@rec.step("empty the bucket (list + DELETE each) and DELETE it; HEAD then 404", needs=MB)
def _() -> None:
    for key in list_all():
        ok(curl(url(key), method="DELETE"), 204, f"DELETE {key!r}")
    expect_equal(list_all(), [], "keys left")
    ok(curl(url(), method="DELETE"), 204, "DeleteBucket")
    refused(curl(url(), "-I"), 404, "", "HEAD of the deleted bucket")
    refused(curl(f"{url()}?{qs({'list-type': '2'})}"), 404, "NoSuchBucket", "ListObjectsV2 of the deleted bucket")
