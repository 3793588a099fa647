"""What RemoteBackend takes for an upstream's answer: a web page (a captive portal's, a proxy's)
is never S3's, and no S3 document or bucket policy is taken for one."""

from __future__ import annotations

import pytest

from s3serve.storage.remote_xml import is_web_page


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Welcome</body></html>",
        b"<!DOCTYPE html>\n<html lang=en>",
        b'\xef\xbb\xbf\r\n  <!doctype HTML PUBLIC "-//W3C//DTD HTML 4.01//EN">',
        b'<?xml version="1.0"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "x">\n<html>',
        b"<!-- the portal -->\n<!-- of the hotel -->\n<HTML>",
    ],
)
def test_a_web_page_is_one(body: bytes) -> None:
    assert is_web_page(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"  \n ",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Contents><Key>&lt;html&gt;</Key>',
        b"<Tagging><TagSet><Tag><Key>html</Key><Value>&lt;html&gt;</Value></Tag></TagSet></Tagging>",
        b"<CompleteMultipartUploadResult><Key>index.html</Key><ETag>&quot;x-2&quot;</ETag>",
        b'{"Version": "2012-10-17", "Statement": [{"Sid": "<html>"}]}',
        b"<htmlish/>",
        b"OK",
    ],
)
def test_no_s3_answer_is_a_web_page(body: bytes) -> None:
    assert not is_web_page(body)
