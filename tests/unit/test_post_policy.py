"""postpolicy: the signature of a POST form (AWS's and botocore's published vectors) and the POST
policy language (parsing, conditions, field coverage)."""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json

import pytest

from s3serve import errors
from s3serve.config import User
from s3serve.postpolicy import Fields, Policy, SizeRange, authenticate, check_policy, parse_policy

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
USER = User(AWS_KEY, AWS_SECRET)

# AWS's "Example: Browser-Based Upload using HTTP POST (Using AWS Signature Version 4)": the policy
# with its CRLF line ends, which the published base64 and signature were computed over.
AWS_POLICY = (
    '{ "expiration": "2015-12-30T12:00:00.000Z",\r\n'
    '  "conditions": [\r\n'
    '    {"bucket": "sigv4examplebucket"},\r\n'
    '    ["starts-with", "$key", "user/user1/"],\r\n'
    '    {"acl": "public-read"},\r\n'
    '    {"success_action_redirect": "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html"},\r\n'
    '    ["starts-with", "$Content-Type", "image/"],\r\n'
    '    {"x-amz-meta-uuid": "14365123651274"},\r\n'
    '    {"x-amz-server-side-encryption": "AES256"},\r\n'
    '    ["starts-with", "$x-amz-meta-tag", ""],\r\n'
    "\r\n"
    '    {"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request"},\r\n'
    '    {"x-amz-algorithm": "AWS4-HMAC-SHA256"},\r\n'
    '    {"x-amz-date": "20151229T000000Z" }\r\n'
    "  ]\r\n"
    "}"
)
AWS_SIGNATURE = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
# botocore's generate_presigned_post("sigv4examplebucket", "user/user1/photo.jpg") with the clock
# at 2015-12-29T00:00:00Z and the same credentials.
BOTOCORE_POLICY = (
    "eyJleHBpcmF0aW9uIjogIjIwMTUtMTItMjlUMDE6MDA6MDBaIiwgImNvbmRpdGlvbnMiOiBbeyJidWNrZXQiOiAic2lndjRleGFtcGxlYnVja2V0In0s"
    "IHsia2V5IjogInVzZXIvdXNlcjEvcGhvdG8uanBnIn0sIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwgeyJ4LWFtei1jcmVk"
    "ZW50aWFsIjogIkFLSUFJT1NGT0ROTjdFWEFNUExFLzIwMTUxMjI5L3VzLWVhc3QtMS9zMy9hd3M0X3JlcXVlc3QifSwgeyJ4LWFtei1kYXRlIjogIjIw"
    "MTUxMjI5VDAwMDAwMFoifV19"
)
BOTOCORE_SIGNATURE = "3364624b39010d9b06f5d9b8c9a18a6e478d261c048159c92f2fd6fa885f14e6"
DEC_29_2015_NOON = calendar.timegm((2015, 12, 29, 12, 0, 0))
NOW = float(calendar.timegm((2026, 6, 1, 0, 0, 0)))


def lookup(access_key: str) -> User | None:
    return USER if access_key == AWS_KEY else None


def encode(doc: object) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def v4_fields(policy: str, signature: str, **extra: str) -> Fields:
    return Fields.from_pairs(
        [
            ("key", "k"),
            ("X-Amz-Credential", f"{AWS_KEY}/20151229/us-east-1/s3/aws4_request"),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Date", "20151229T000000Z"),
            ("Policy", policy),
            ("X-Amz-Signature", signature),
            *extra.items(),
        ]
    )


def policy_of(*conditions: object, expiration: str = "2027-01-15T00:00:00Z") -> Policy:
    return parse_policy(encode({"expiration": expiration, "conditions": list(conditions)}))


def fields(**values: str) -> Fields:
    return Fields.from_pairs(values.items())


def denied(exc: pytest.ExceptionInfo[errors.S3Error]) -> str:
    assert exc.value.code == "AccessDenied" and exc.value.status == 403
    return exc.value.message


# -- signatures ----------------------------------------------------------------------------------


def test_aws_example_vector() -> None:
    policy = base64.b64encode(AWS_POLICY.encode()).decode()
    assert len(policy) == 864 and policy.startswith("eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEy")
    auth = authenticate(v4_fields(policy, AWS_SIGNATURE), lookup)
    assert auth is not None and auth.user == USER and auth.version == 4
    assert auth.signing_key is not None
    assert auth.signing_key.hex() == "cbcef1ebeaefc82cce6530b9f0a9ae598846065f5c5bae0674bd5ebc4ba52d28"
    # The example's own form, held against its own policy on the day it was valid.
    form = Fields.from_pairs(
        [
            ("key", "user/user1/${filename}"),
            ("acl", "public-read"),
            ("success_action_redirect", "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html"),
            ("Content-Type", "image/jpeg"),
            ("x-amz-meta-uuid", "14365123651274"),
            ("x-amz-server-side-encryption", "AES256"),
            ("X-Amz-Credential", f"{AWS_KEY}/20151229/us-east-1/s3/aws4_request"),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Date", "20151229T000000Z"),
            ("x-amz-meta-tag", ""),
            ("Policy", policy),
            ("X-Amz-Signature", AWS_SIGNATURE),
        ]
    )
    form.expand_filename("photo.jpg")
    assert form.get("key") == "user/user1/photo.jpg"
    assert check_policy(parse_policy(policy), form, "sigv4examplebucket", DEC_29_2015_NOON) is None
    with pytest.raises(errors.S3Error) as exc:
        check_policy(parse_policy(policy), form, "sigv4examplebucket", calendar.timegm((2015, 12, 30, 12, 0, 1)))
    assert denied(exc) == "Invalid according to Policy: Policy expired."


def test_botocore_vector() -> None:
    auth = authenticate(v4_fields(BOTOCORE_POLICY, BOTOCORE_SIGNATURE.upper()), lookup)
    assert auth is not None and auth.region == "us-east-1" and auth.access_key == AWS_KEY
    form = v4_fields(BOTOCORE_POLICY, BOTOCORE_SIGNATURE)
    form.values["key"] = "user/user1/photo.jpg"
    assert check_policy(parse_policy(BOTOCORE_POLICY), form, "sigv4examplebucket", DEC_29_2015_NOON - 11 * 3600) is None


def test_sigv4_signature_mismatch() -> None:
    with pytest.raises(errors.S3Error) as exc:
        authenticate(v4_fields(BOTOCORE_POLICY[:-2], BOTOCORE_SIGNATURE), lookup)
    assert exc.value.code == "SignatureDoesNotMatch" and exc.value.status == 403
    assert exc.value.extra["StringToSign"] == BOTOCORE_POLICY[:-2]
    assert exc.value.extra["SignatureProvided"] == BOTOCORE_SIGNATURE
    assert exc.value.extra["AWSAccessKeyId"] == AWS_KEY


@pytest.mark.parametrize("missing", ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Signature"])
def test_sigv4_field_missing(missing: str) -> None:
    form = v4_fields(BOTOCORE_POLICY, BOTOCORE_SIGNATURE)
    del form.values[missing.lower()]
    with pytest.raises(errors.S3Error) as exc:
        authenticate(form, lookup)
    assert (exc.value.code, exc.value.status) == ("InvalidArgument", 400)
    assert exc.value.message == (
        f"Bucket POST must contain a field named '{missing}'.  If it is specified, please check the order of the fields."
    )
    assert exc.value.extra == {"ArgumentName": missing, "ArgumentValue": ""}


@pytest.mark.parametrize(
    ("name", "value", "argument"),
    [
        ("x-amz-algorithm", "AWS4-HMAC-SHA1", "X-Amz-Algorithm"),
        ("x-amz-credential", "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1", "X-Amz-Credential"),
        ("x-amz-credential", "/20151229/us-east-1/s3/aws4_request", "X-Amz-Credential"),
        ("x-amz-credential", f"{AWS_KEY}/20151229/us-east-1/ec2/aws4_request", "X-Amz-Credential"),
        ("x-amz-date", "2015-12-29T00:00:00Z", "X-Amz-Date"),
    ],
)
def test_sigv4_fields_malformed(name: str, value: str, argument: str) -> None:
    form = v4_fields(BOTOCORE_POLICY, BOTOCORE_SIGNATURE)
    form.values[name] = value
    with pytest.raises(errors.S3Error) as exc:
        authenticate(form, lookup)
    assert exc.value.code == "InvalidArgument" and exc.value.extra["ArgumentName"] == argument


def test_unknown_access_key() -> None:
    form = v4_fields(BOTOCORE_POLICY, BOTOCORE_SIGNATURE)
    form.values["x-amz-credential"] = "SOMEONEELSE/20151229/us-east-1/s3/aws4_request"
    with pytest.raises(errors.S3Error) as exc:
        authenticate(form, lookup)
    assert (exc.value.code, exc.value.status) == ("InvalidAccessKeyId", 403)
    assert exc.value.extra["AWSAccessKeyId"] == "SOMEONEELSE"


def test_sigv2() -> None:
    policy = encode({"expiration": "2027-01-01T00:00:00Z", "conditions": []})
    signature = base64.b64encode(hmac.new(AWS_SECRET.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    form = Fields.from_pairs([("awsaccesskeyid", AWS_KEY), ("POLICY", policy), ("Signature", signature)])
    auth = authenticate(form, lookup)
    assert auth is not None and auth.version == 2 and auth.user == USER
    form.values["signature"] = signature.lower()
    with pytest.raises(errors.S3Error) as exc:
        authenticate(form, lookup)
    assert exc.value.code == "SignatureDoesNotMatch"
    del form.values["awsaccesskeyid"]
    with pytest.raises(errors.S3Error) as exc:
        authenticate(form, lookup)
    assert exc.value.code == "InvalidArgument" and exc.value.extra["ArgumentName"] == "AWSAccessKeyId"


def test_anonymous_and_unsigned() -> None:
    # Without a policy a form is anonymous, whatever else it carries.
    assert authenticate(fields(key="k", signature="x"), lookup) is None
    assert authenticate(fields(key="k", policy=""), lookup) is None
    with pytest.raises(errors.S3Error) as exc:
        authenticate(fields(key="k", policy=BOTOCORE_POLICY), lookup)
    assert denied(exc) == "Access Denied"


# -- the policy document -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("not base64!", "Invalid Policy: invalid Base64 encoding."),
        (base64.b64encode(b"{not json").decode(), "Invalid Policy: Invalid JSON."),
        (base64.b64encode(b"\xff\xfe").decode(), "Invalid Policy: Invalid JSON."),
        (encode([]), "Invalid Policy: Invalid JSON."),
        (encode({"EXPIRATION": "2027-01-01T00:00:00Z", "conditions": []}), "Invalid Policy: Unexpected: 'expiration'"),
        (encode({"conditions": []}), "Invalid Policy: Policy missing expiration."),
        (encode({"expiration": "2027-01-01T00:00:00Z"}), "Invalid Policy: Policy missing conditions."),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": {}}),
            "Invalid Policy: Invalid 'conditions' value: must be a List.",
        ),
        (
            encode({"expiration": "2011-09-13T07:52:58+02:00", "conditions": []}),
            "Invalid Policy: Invalid 'expiration' value: '2011-09-13T07:52:58+02:00'",
        ),
        (
            encode({"expiration": "2015-10-17 03:15:59 UTC", "conditions": []}),
            "Invalid Policy: Invalid 'expiration' value: '2015-10-17 03:15:59 UTC'",
        ),
        (
            encode({"expiration": "2015-02-30T00:00:00Z", "conditions": []}),
            "Invalid Policy: Invalid 'expiration' value: '2015-02-30T00:00:00Z'",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [{}]}),
            "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [{"bucket": "b", "key": "k"}]}),
            "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [{"Content-Length": 6199034}]}),
            "Invalid Policy: Invalid Simple-Condition: value must be a string.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [{"success_action_redirect": None}]}),
            "Invalid Policy: Invalid JSON.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [[]]}),
            "Invalid Policy: Invalid Condition: missing operation identifier.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [["ends-with", "$key", "x"]]}),
            "Invalid Policy: Invalid Condition: unknown operation 'ends-with'.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [["content-length-range", 0]]}),
            "Invalid Policy: Invalid content-length-range: wrong number of arguments.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [["content-length-range", 0, 512.0]]}),
            "Invalid Policy: Invalid JSON.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": [["eq", "$key", 5]]}),
            "Invalid Policy: Invalid JSON.",
        ),
        (
            encode({"expiration": "2027-01-01T00:00:00Z", "conditions": ["key"]}),
            "Invalid Policy: Invalid condition test: must be a List or Object.",
        ),
        (
            # Nested deeper than the JSON decoder recurses (it fits in a form's 20 KB).
            base64.b64encode(b'{"expiration":"2027-01-01T00:00:00Z","conditions":' + b"[" * 5000 + b"]" * 5000 + b"}").decode(),
            "Invalid Policy: Invalid JSON.",
        ),
        (
            # Digits of another script are not ISO 8601's.
            encode({"expiration": "\u0662\u0660\u0662\u0667-01-01T00:00:00Z", "conditions": []}),
            "Invalid Policy: Invalid 'expiration' value: '\u0662\u0660\u0662\u0667-01-01T00:00:00Z'",
        ),
    ],
)
def test_invalid_policy_documents(encoded: str, message: str) -> None:
    with pytest.raises(errors.S3Error) as exc:
        parse_policy(encoded)
    assert (exc.value.code, exc.value.status, exc.value.message) == ("InvalidPolicyDocument", 400, message)


def test_policy_parsing() -> None:
    # Wrapped base64 (as some encoders write it) still decodes; the expiration keeps its fraction.
    encoded = encode({"expiration": "2027-01-15T00:00:00.250Z", "conditions": [{"key": "k"}]})
    policy = parse_policy(encoded[:20] + "\n" + encoded[20:])
    assert policy.expiration == calendar.timegm((2027, 1, 15, 0, 0, 0)) + 0.25
    assert [c.operation for c in policy.conditions] == ["eq"]
    # Operation names are matched without regard to case, as S3 clients write them both ways.
    assert policy_of(["StArTs-WiTh", "$KeY", "fo"]).conditions[0].operation == "starts-with"


# -- conditions ----------------------------------------------------------------------------------


def test_exact_match_and_its_message() -> None:
    policy = policy_of({"key": "a.txt"}, ["eq", "$Content-Disposition", 'filename="t.png"'])
    check_policy(policy, fields(key="a.txt", **{"content-disposition": 'filename="t.png"'}), "b", NOW)
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy, fields(key="A.txt", **{"content-disposition": 'filename="t.png"'}), "b", NOW)
    # Values are case-sensitive; a simple condition is reported as the eq array it stands for.
    assert denied(exc) == 'Invalid according to Policy: Policy Condition failed: ["eq", "$key", "a.txt"]'
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy, fields(key="a.txt", **{"Content-Disposition": "inline"}), "b", NOW)
    assert denied(exc).endswith('["eq", "$Content-Disposition", "filename=\\"t.png\\""]')


def test_names_are_case_insensitive() -> None:
    policy = policy_of({"bUcKeT": "b"}, ["starts-with", "$KeY", "foo"], {"AcL": "private"}, ["eq", "$CoNtEnT-TyPe", "text/plain"])
    form = Fields.from_pairs([("kEy", "foo.txt"), ("aCl", "private"), ("Content-Type", "text/plain")])
    assert check_policy(policy, form, "b", NOW) is None


def test_bucket_is_the_url_bucket() -> None:
    policy = policy_of({"bucket": "mine"}, {"key": "k"})
    check_policy(policy, fields(key="k"), "mine", NOW)
    # A bucket field the form carries is covered by the condition but proves nothing.
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy, fields(key="k", bucket="mine"), "theirs", NOW)
    assert denied(exc).endswith('["eq", "$bucket", "mine"]')


def test_starts_with() -> None:
    policy = policy_of(["starts-with", "$key", "user/"], ["starts-with", "$success_action_redirect", ""])
    check_policy(policy, fields(key="user/a", success_action_redirect="https://x"), "b", NOW)
    check_policy(policy, fields(key="user/", success_action_redirect=""), "b", NOW)
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy, fields(key="User/a", success_action_redirect=""), "b", NOW)
    assert denied(exc).endswith('["starts-with", "$key", "user/"]')
    # A condition on a field the form lacks fails, even with an empty prefix (S3 does so).
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy, fields(key="user/a"), "b", NOW)
    assert denied(exc).endswith('["starts-with", "$success_action_redirect", ""]')


def test_content_type_lists() -> None:
    policy = policy_of({"key": "k"}, ["starts-with", "$Content-Type", "image/"])
    check_policy(policy, fields(key="k", **{"Content-Type": "image/jpg,image/png, image/gif"}), "b", NOW)
    with pytest.raises(errors.S3Error):
        check_policy(policy, fields(key="k", **{"Content-Type": "image/jpg,text/plain"}), "b", NOW)
    # Other fields are plain strings, commas and all.
    policy = policy_of(["starts-with", "$key", "a"])
    check_policy(policy, fields(key="a,b"), "b", NOW)


def test_content_length_range() -> None:
    assert check_policy(policy_of(["content-length-range", 5, 10]), fields(), "b", NOW) == SizeRange(5, 10)
    assert check_policy(policy_of(["content-length-range", "5", "10"]), fields(), "b", NOW) == SizeRange(5, 10)
    both = policy_of(["content-length-range", 0, 100], ["content-length-range", 10, 1000])
    assert check_policy(both, fields(), "b", NOW) == SizeRange(10, 100)
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy_of(["content-length-range", "test", "10"]), fields(), "b", NOW)
    assert denied(exc) == 'Invalid according to Policy: Policy Condition failed: ["content-length-range", "test", "10"]'
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy_of(["content-length-range", "0", "\u0661\u0660"]), fields(), "b", NOW)
    assert denied(exc).startswith("Invalid according to Policy: Policy Condition failed:")


def test_name_without_dollar_fails() -> None:
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy_of(["eq", "key", "k"]), fields(key="k"), "b", NOW)
    assert denied(exc).endswith('["eq", "key", "k"]')


def test_every_field_needs_a_condition() -> None:
    policy = policy_of({"key": "k"})
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy, Fields.from_pairs([("key", "k"), ("Filename", "a.png"), ("StorageClass", "X")]), "b", NOW)
    # Named as the form spelled them.
    assert denied(exc) == "Invalid according to Policy: Extra input fields: Filename, StorageClass"
    exempt = Fields.from_pairs(
        [
            ("key", "k"),
            ("Policy", "p"),
            ("X-Amz-Signature", "s"),
            ("AWSAccessKeyId", "a"),
            ("signature", "s"),
            ("x-ignore-tracking", "t"),
        ]
    )
    assert check_policy(policy, exempt, "b", NOW) is None


def test_expired() -> None:
    policy = policy_of({"key": "k"}, expiration="2020-01-01T00:00:00Z")
    with pytest.raises(errors.S3Error) as exc:
        check_policy(policy, fields(key="wrong"), "b", NOW)
    assert denied(exc) == "Invalid according to Policy: Policy expired."


# -- the form ------------------------------------------------------------------------------------


def test_repeated_fields_are_joined() -> None:
    form = Fields.from_pairs([("x-amz-meta-tag", "Ninja"), ("X-Amz-Meta-Tag", "Stallman")])
    assert form.get("x-amz-meta-tag") == "Ninja,Stallman"
    assert form.spelled["x-amz-meta-tag"] == "x-amz-meta-tag"
    check_policy(policy_of({"x-amz-meta-tag": "Ninja,Stallman"}), form, "b", NOW)


@pytest.mark.parametrize(
    ("filename", "key"),
    [
        ("photo.jpg", "up/photo.jpg"),
        ("C:\\Program Files\\directory1\\file.txt", "up/file.txt"),
        ("/home/me/file.txt", "up/file.txt"),
        ("", "up/"),
        (None, "up/${filename}"),  # no filename parameter at all: S3 leaves the variable
    ],
)
def test_filename_variable(filename: str | None, key: str) -> None:
    form = fields(key="up/${filename}", **{"Content-Disposition": "attachment; filename=${filename}"})
    form.expand_filename(filename)
    assert form.get("key") == key
    assert form.get("content-disposition") == "attachment; filename=" + key[3:]
