"""SSE-C's pure pieces: the salted key check a record keeps, its form in a record, and which
requests to an upstream carry the request's keys."""

from __future__ import annotations

import base64
import hashlib
import os

from s3serve.handlers.encryption import bucket_encryption
from s3serve.storage.base import SSE_S3, Encryption
from s3serve.storage.metadata import Record
from s3serve.storage.ssec import (
    REQUEST_KEYS,
    CustomerKey,
    RequestKeys,
    key_check,
    key_matches,
    key_md5,
    reading_written,
    upstream_headers,
)


def test_key_check_is_salted_and_matches_only_its_key() -> None:
    key = os.urandom(32)
    one, two = key_check(key), key_check(key)
    assert one != two  # a new salt each time: equal keys do not show as equal checks
    assert key_matches(one, key) and key_matches(two, key)
    assert not key_matches(one, os.urandom(32))
    assert not key_matches("sha1$x$y", key) and not key_matches("", key)
    for form in (key, base64.b64encode(key), key.hex().encode()):
        assert form.decode("latin-1") not in one


def test_key_md5_is_base64_of_the_raw_key() -> None:
    key = b"a" * 32
    assert key_md5(key) == base64.b64encode(hashlib.md5(key).digest()).decode() == "Xsqb0+sHwAbNQ65I395/0w=="


def test_customer_encryption_in_a_record_and_answers() -> None:
    key = os.urandom(32)
    sse_c = Encryption.of("AES256", customer_key_md5=key_md5(key), customer_key_check=key_check(key))
    assert sse_c is not SSE_S3 and sse_c.is_customer
    assert sse_c.headers() == {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key-md5": key_md5(key),
    }
    record = Record(etag="0" * 32, size=1, encryption=sse_c)
    again = Record.from_json(record.to_json())
    assert again is not None and again.encryption == sse_c
    assert again.encryption.customer_key_check is not None and key_matches(again.encryption.customer_key_check, key)
    # An upstream's answer describes the same encryption (the check is no part of equality).
    assert Encryption.from_headers(sse_c.headers()) == sse_c
    # Records written before SSE-C keep reading as they did.
    assert Encryption.from_doc(["aws:kms", "k", True]) == Encryption.of("aws:kms", "k", True)


def test_stored_configuration_blocks_unless_it_says_none() -> None:
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    rule = "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"
    doc = f"<ServerSideEncryptionConfiguration {ns}><Rule>{rule}%s</Rule></ServerSideEncryptionConfiguration>"
    blocked = "<BlockedEncryptionTypes><EncryptionType>%s</EncryptionType></BlockedEncryptionTypes>"
    assert bucket_encryption(b"").blocks_customer_keys
    assert bucket_encryption((doc % "").encode()).blocks_customer_keys
    assert bucket_encryption((doc % (blocked % "SSE-C")).encode()).blocks_customer_keys
    assert not bucket_encryption((doc % (blocked % "NONE")).encode()).blocks_customer_keys


def test_upstream_requests_carry_the_keys_they_take() -> None:
    read, write = CustomerKey("AES256", b"r" * 32, key_md5(b"r" * 32)), CustomerKey("AES256", b"w" * 32, key_md5(b"w" * 32))
    token = REQUEST_KEYS.set(RequestKeys(read, write))
    try:
        assert upstream_headers("GET", "k", [], {}) == read.headers()
        assert upstream_headers("HEAD", "k", ["partNumber"], {}) == read.headers()
        assert upstream_headers("PUT", "k", [], {}) == write.headers()
        assert upstream_headers("PUT", "k", ["partNumber", "uploadId"], {}) == write.headers()
        copy = upstream_headers("PUT", "k", [], {"x-amz-copy-source": "/b/src"})
        assert copy["x-amz-copy-source-server-side-encryption-customer-key"] == base64.b64encode(read.key).decode()
        assert copy["x-amz-server-side-encryption-customer-key"] == base64.b64encode(write.key).decode()
        # Sub-resources, deletes and bucket requests take none.
        assert upstream_headers("GET", "k", ["tagging"], {}) == {}
        assert upstream_headers("DELETE", "k", [], {}) == {}
        assert upstream_headers("GET", "", [], {}) == {}
    finally:
        REQUEST_KEYS.reset(token)
    assert upstream_headers("GET", "k", [], {}) == {}


def test_a_writes_description_of_what_it_made_carries_the_written_objects_key() -> None:
    source = CustomerKey("AES256", b"s" * 32, key_md5(b"s" * 32))
    target = CustomerKey("AES256", b"t" * 32, key_md5(b"t" * 32))
    for keys, described in ((RequestKeys(source, target), target.headers()), (RequestKeys(source, None), {})):
        token = REQUEST_KEYS.set(keys)
        try:
            with reading_written():
                assert upstream_headers("HEAD", "k", [], {}) == described
            assert upstream_headers("HEAD", "k", [], {}) == source.headers()  # the source's again
        finally:
            REQUEST_KEYS.reset(token)
    with reading_written():  # a request without keys
        assert upstream_headers("HEAD", "k", [], {}) == {}
