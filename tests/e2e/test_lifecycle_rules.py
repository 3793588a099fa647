"""PutBucketLifecycleConfiguration validates a rule's days and dates as S3 does, and names a rule
sent without an ID. s3serve keeps the rules (it expires and moves nothing): a configuration that
S3 would refuse must be refused here too, or a deployment tested against s3serve breaks on AWS.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, signed

UTC = datetime.UTC
DAYS_MESSAGE = "'{}' for {} action must be a positive integer"
DATE_MESSAGE = "'Date' must be at midnight GMT"


def _refused(s3, bucket: str, rules: list[dict[str, Any]]) -> tuple[str, int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    error = exc.value.response["Error"]
    return str(error["Code"]), int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"]), str(error["Message"])


def _rule(**action: Any) -> dict[str, Any]:
    return {"ID": "r", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", **action}


@pytest.mark.parametrize("days", [0, -1])
@pytest.mark.parametrize(
    ("action", "element"),
    [
        ("Expiration", "Days"),
        ("NoncurrentVersionExpiration", "NoncurrentDays"),
        ("AbortIncompleteMultipartUpload", "DaysAfterInitiation"),
    ],
)
def test_days_of_an_expiration_must_be_positive(s3, bucket: str, action: str, element: str, days: int) -> None:  # type: ignore[no-untyped-def]
    rule = _rule(**{action: {element: days}})
    if action == "AbortIncompleteMultipartUpload":
        rule["Filter"] = {}  # S3 allows it only on a rule without tags: a prefix is fine, none too
    assert _refused(s3, bucket, [rule]) == ("InvalidArgument", 400, DAYS_MESSAGE.format(element, action))
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "NoSuchLifecycleConfiguration"


def test_a_transition_may_be_on_day_zero_but_not_before(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    rules = [_rule(Transitions=[{"Days": 0, "StorageClass": "GLACIER"}], Expiration={"Days": 1})]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]
    assert (got["Transitions"], got["Expiration"]) == ([{"Days": 0, "StorageClass": "GLACIER"}], {"Days": 1})
    negative = [_rule(Transitions=[{"Days": -1, "StorageClass": "GLACIER"}])]
    assert _refused(s3, bucket, negative) == ("InvalidArgument", 400, DAYS_MESSAGE.format("Days", "Transition"))


def test_dates_must_be_midnight_utc(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    midnight = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    rules = [
        _rule(Expiration={"Date": midnight}),
        {**_rule(Transitions=[{"Date": midnight, "StorageClass": "GLACIER"}]), "ID": "t"},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got[0]["Expiration"]["Date"] == midnight
    assert got[1]["Transitions"][0]["Date"] == midnight
    for when in (datetime.datetime(2030, 1, 1, 12, tzinfo=UTC), datetime.datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)):
        assert _refused(s3, bucket, [_rule(Expiration={"Date": when})]) == ("InvalidArgument", 400, DATE_MESSAGE)
        transition = _rule(Transitions=[{"Date": when, "StorageClass": "GLACIER"}])
        assert _refused(s3, bucket, [transition]) == ("InvalidArgument", 400, DATE_MESSAGE)
    # The refusals left the configuration as it was.
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == got


def _put_raw(server: Server, bucket: str, rule_xml: str) -> tuple[int, dict[str, str]]:
    """PUT ?lifecycle with a rule written out, for values boto3 would not send as they are."""
    body = (
        '<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Rule><ID>raw</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>{rule_xml}</Rule>"
        "</LifecycleConfiguration>"
    ).encode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r = signed(server, "PUT", f"/{bucket}?lifecycle", body, {"Content-MD5": md5})
    if r.status == 200:
        return 200, {}
    return r.status, {child.tag: child.text or "" for child in ET.fromstring(r.data)}


@pytest.mark.parametrize(
    "date",
    ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.000Z", "2030-01-01T00:00:00+00:00", "2030-01-01T02:00:00+02:00"],
)
def test_midnight_utc_in_any_iso_8601_spelling(server: Server, bucket: str, date: str) -> None:
    assert _put_raw(server, bucket, f"<Expiration><Date>{date}</Date></Expiration>") == (200, {})


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("<Expiration><Date>2030-01-01T00:00:00+02:00</Date></Expiration>", ("InvalidArgument", DATE_MESSAGE)),
        ("<Expiration><Date>next tuesday</Date></Expiration>", ("MalformedXML", None)),
        ("<Expiration><Days>ten</Days></Expiration>", ("MalformedXML", None)),
        ("<Expiration><Days>1.5</Days></Expiration>", ("MalformedXML", None)),
    ],
)
def test_dates_and_days_that_are_wrong_as_written(server: Server, bucket: str, action: str, expected: tuple[str, str | None]) -> None:
    status, error = _put_raw(server, bucket, action)
    assert (status, error["Code"]) == (400, expected[0])
    if expected[1] is not None:
        assert error["Message"] == expected[1]


def test_a_rule_without_an_id_gets_one(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    rules = [
        {"Filter": {"Prefix": "a/"}, "Status": "Enabled", "Expiration": {"Days": 3}},
        {"ID": "", "Filter": {"Prefix": "b/"}, "Status": "Enabled", "Expiration": {"Days": 4}},
        {"ID": "named", "Filter": {"Prefix": "c/"}, "Status": "Disabled", "Expiration": {"Days": 5}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    ids = [rule["ID"] for rule in got]
    assert ids[2] == "named"
    assert all(0 < len(i) <= 255 for i in ids) and len(set(ids)) == 3
    # Generated once, when stored: every Get shows the same names.
    assert [rule["ID"] for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]] == ids
    assert [{k: v for k, v in rule.items() if k != "ID"} for rule in got] == [
        {k: v for k, v in rule.items() if k != "ID"} for rule in rules
    ]
    # A configuration put again as it was read back keeps them (as a client editing it does).
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": got})
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == got
