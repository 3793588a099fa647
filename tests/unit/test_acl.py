"""The ACL a PutBucketAcl / PutObjectAcl names: S3's validation, and whether it grants the owner alone."""

from __future__ import annotations

import pytest

from s3serve import errors
from s3serve.handlers.acl import requested_acl_is_owner_only

OWNER = "a" * 64
OTHER = "b" * 64
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _policy(*grants: str, owner: str = OWNER) -> bytes:
    return (
        f'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>{owner}</ID></Owner>'
        f"<AccessControlList>{''.join(grants)}</AccessControlList></AccessControlPolicy>"
    ).encode()


def _grant(kind: str, field: str, value: str, permission: str, prefix: str = "xsi") -> str:
    return (
        f'<Grant><Grantee xmlns:{prefix}="http://www.w3.org/2001/XMLSchema-instance" {prefix}:type="{kind}">'
        f"<{field}>{value}</{field}></Grantee><Permission>{permission}</Permission></Grant>"
    )


OWNER_FULL = _grant("CanonicalUser", "ID", OWNER, "FULL_CONTROL")


@pytest.mark.parametrize(
    "headers,body,owner_only",
    [
        ({"x-amz-acl": "private"}, b"", True),
        ({"x-amz-acl": "bucket-owner-full-control"}, b"", True),
        ({"x-amz-acl": "bucket-owner-read"}, b"", True),
        ({"x-amz-acl": "public-read"}, b"", False),
        ({"x-amz-acl": "log-delivery-write"}, b"", False),
        ({"x-amz-grant-full-control": f'id="{OWNER}"'}, b"", True),
        ({"x-amz-grant-full-control": f"id={OWNER}", "x-amz-grant-read": f'id="{OWNER}"'}, b"", True),
        ({"x-amz-grant-read": f'id="{OWNER}"'}, b"", False),  # the owner would lose FULL_CONTROL
        ({"x-amz-grant-full-control": f'id="{OWNER}", id="{OTHER}"'}, b"", False),
        ({"x-amz-grant-read": f'uri="{ALL_USERS}"'}, b"", False),
        ({"x-amz-grant-read": 'emailAddress="someone@example.com"'}, b"", False),
        ({}, _policy(OWNER_FULL), True),
        ({}, _policy(_grant("CanonicalUser", "ID", OWNER, "FULL_CONTROL", prefix="xs")), True),
        ({}, _policy(OWNER_FULL, _grant("Group", "URI", ALL_USERS, "READ")), False),
        ({}, _policy(OWNER_FULL, owner=OTHER), False),
        ({}, _policy(), False),  # no grant at all
    ],
)
def test_owner_only(headers: dict[str, str], body: bytes, owner_only: bool) -> None:
    assert requested_acl_is_owner_only(headers, body, OWNER) is owner_only


@pytest.mark.parametrize(
    "headers,body,code",
    [
        ({}, b"", "MissingSecurityHeader"),
        ({}, b"  \n", "MissingSecurityHeader"),
        ({"x-amz-acl": "private", "x-amz-grant-read": f'id="{OWNER}"'}, b"", "InvalidRequest"),
        ({"x-amz-acl": "private"}, _policy(OWNER_FULL), "UnexpectedContent"),
        ({"x-amz-grant-read": f'id="{OWNER}"'}, _policy(OWNER_FULL), "UnexpectedContent"),
        ({"x-amz-acl": "Private"}, b"", "InvalidArgument"),
        ({"x-amz-grant-read": "everyone"}, b"", "InvalidArgument"),
        ({"x-amz-grant-read": 'group="x"'}, b"", "InvalidArgument"),
        ({"x-amz-grant-read": 'uri="http://example.com/"'}, b"", "InvalidArgument"),
        ({"x-amz-grant-read": 'id="not-an-id"'}, b"", "InvalidArgument"),
        ({}, b"<AccessControlPolicy><Owner>", "MalformedACLError"),
        ({}, b"<Tagging/>", "MalformedACLError"),
        ({}, b"<AccessControlPolicy><AccessControlList/></AccessControlPolicy>", "MalformedACLError"),
        ({}, _policy(OWNER_FULL).replace(b"<AccessControlList>", b"").replace(b"</AccessControlList>", b""), "MalformedACLError"),
        ({}, _policy(_grant("CanonicalUser", "ID", OWNER, "ALL")), "MalformedACLError"),
        ({}, _policy(_grant("Robot", "ID", OWNER, "READ")), "MalformedACLError"),
        ({}, _policy(_grant("Group", "ID", OWNER, "READ")), "MalformedACLError"),
        ({}, _policy(_grant("Group", "URI", "http://example.com/", "READ")), "InvalidArgument"),
        ({}, _policy(_grant("CanonicalUser", "ID", "nobody", "READ")), "InvalidArgument"),
        ({}, _policy(OWNER_FULL, owner="nobody"), "InvalidArgument"),
    ],
)
def test_validation(headers: dict[str, str], body: bytes, code: str) -> None:
    with pytest.raises(errors.S3Error) as info:
        requested_acl_is_owner_only(headers, body, OWNER)
    assert info.value.code == code and info.value.status == 400


def test_the_owner_id_may_be_any_configured_id() -> None:
    # Configured user ids need not look like S3's canonical ids.
    assert requested_acl_is_owner_only({"x-amz-grant-full-control": 'id="alice"'}, b"", "alice")
    assert requested_acl_is_owner_only({}, _policy(_grant("CanonicalUser", "ID", "alice", "FULL_CONTROL"), owner="alice"), "alice")
