"""A loopback HTTP proxy that lets clients use virtual-host style without DNS or /etc/hosts.

Here ``*.localhost`` does not resolve (glibc has no nss-myhostname), yet virtual-host style needs
``bucket.localhost:PORT`` in the Host header. Clients that honour ``HTTP_PROXY`` (botocore, hence
the aws cli) send the absolute URL to this proxy, which connects to the one fixed loopback target
whatever the name says, rewrites the request line to origin form and leaves the Host header, and
therefore the signature, untouched. Each forwarded request carries ``Connection: close`` so that
every request gets its own request line to rewrite.

It logs one line per request (``HOST METHOD TARGET``) so a client can prove that virtual-host
requests really happened.

    python -m conformance.vhost_proxy --listen 127.0.0.1:PORT --target 127.0.0.1:PORT --domain localhost --log FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024
HOP_BY_HOP = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


class Proxy:
    def __init__(self, target_host: str, target_port: int, domain: str, log_path: str | None) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.domain = domain.lower()
        self.log_path = log_path

    def allowed(self, host: str) -> bool:
        # Only names under the test domain: this proxy must never become a way off the machine,
        # and it never is (the target is fixed), but refusing other names makes a misconfigured
        # client fail loudly instead of silently talking to the test server.
        h = host.lower().rsplit(":", 1)[0] if not host.startswith("[") else host
        return h == self.domain or h.endswith("." + self.domain) or h in ("127.0.0.1", "localhost")

    def log(self, line: str) -> None:
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            head = await creader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            cwriter.close()
            return
        lines = head[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            await self.refuse(cwriter, b"400 Bad Request")
            return
        if method == b"CONNECT":
            host = target.decode("latin-1")
            if not self.allowed(host):
                await self.refuse(cwriter, b"403 Forbidden")
                return
            self.log(f"{host} CONNECT {host}")
            sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port)
            cwriter.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await cwriter.drain()
            await asyncio.gather(pipe(creader, swriter), pipe(sreader, cwriter))
            cwriter.close()
            swriter.close()
            return
        url = target.decode("latin-1")
        host_header = ""
        headers: list[bytes] = []
        for h in lines[1:]:
            name, _, value = h.partition(b":")
            if name.strip().lower() in HOP_BY_HOP:
                continue
            if name.strip().lower() == b"host":
                host_header = value.strip().decode("latin-1")
            headers.append(h)
        if url.startswith(("http://", "https://")):
            parts = urlsplit(url)
            # Keep the raw path bytes as sent: re-quoting would break the signed canonical URI.
            raw_path = url.split("/", 3)
            origin = "/" + raw_path[3] if len(raw_path) > 3 else "/"
            host = host_header or parts.netloc
        else:
            origin = url
            host = host_header
        if not self.allowed(host):
            await self.refuse(cwriter, b"403 Forbidden")
            return
        self.log(f"{host} {method.decode()} {origin}")
        sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port)
        out = b" ".join([method, origin.encode("latin-1"), version]) + b"\r\n"
        out += b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n"
        swriter.write(out)
        await swriter.drain()
        await asyncio.gather(pipe(creader, swriter), pipe(sreader, cwriter))
        with contextlib.suppress(Exception):
            cwriter.close()
            swriter.close()

    async def refuse(self, writer: asyncio.StreamWriter, status: bytes) -> None:
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()


async def serve(listen: str, target: str, domain: str, log_path: str | None) -> None:
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)
    proxy = Proxy(thost, int(tport), domain, log_path)
    server = await asyncio.start_server(proxy.handle, lhost, int(lport), limit=HEAD_LIMIT)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT to listen on (loopback)")
    ap.add_argument("--target", required=True, help="HOST:PORT of the S3 server (loopback)")
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--log")
    args = ap.parse_args()
    for hp in (args.listen, args.target):
        if not hp.startswith(("127.", "localhost:", "[::1]:")):
            ap.error(f"{hp}: only loopback addresses are allowed")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.target, args.domain, args.log))


if __name__ == "__main__":
    main()
