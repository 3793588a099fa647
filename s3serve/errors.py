"""The one way to fail: every S3 error is an ``S3Error`` subclass with its code and HTTP status.

Storage and handlers raise these; one place (app.handle) renders them as S3 XML. The class name is
the S3 error code, so ``raise NoSuchKey()`` is all it takes.
"""

from __future__ import annotations


class S3Error(Exception):
    status: int = 500
    message: str = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, *, resource: str | None = None, **extra: object) -> None:
        super().__init__(message or self.message)
        self.message = message or type(self).message
        self.resource = resource
        # Additional elements S3 adds to some error bodies (BucketName, Key, StringToSign, ...).
        self.extra: dict[str, object] = extra
        self.headers: dict[str, str] = {}

    @property
    def code(self) -> str:
        return getattr(type(self), "error_code", type(self).__name__)


def _error(name: str, status: int, message: str, code: str | None = None) -> type[S3Error]:
    attrs: dict[str, object] = {"status": status, "message": message}
    if code:
        attrs["error_code"] = code
    return type(name, (S3Error,), attrs)


# 400
AuthorizationHeaderMalformed = _error("AuthorizationHeaderMalformed", 400, "The authorization header is malformed.")
AuthorizationQueryParametersError = _error(
    "AuthorizationQueryParametersError", 400, "Error parsing the X-Amz-Credential parameter."
)
BadRequest = _error("BadRequest", 400, "Bad Request")
BadDigest = _error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
EntityTooSmall = _error("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size.")
EntityTooLarge = _error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size.")
ExpiredToken = _error("ExpiredToken", 400, "The provided token has expired.")
IncompleteBody = _error(
    "IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header."
)
InvalidArgument = _error("InvalidArgument", 400, "Invalid Argument")
InvalidRedirectLocation = _error(
    "InvalidRedirectLocation", 400, "The website redirect location must have a prefix of 'http://' or 'https://' or '/'."
)
InvalidBucketName = _error("InvalidBucketName", 400, "The specified bucket is not valid.")
InvalidDigest = _error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
# PostObject (browser form uploads). The last message is S3's wording, spelling included.
InvalidPolicyDocument = _error(
    "InvalidPolicyDocument", 400, "The content of the form does not meet the conditions specified in the policy document."
)
MalformedPOSTRequest = _error(
    "MalformedPOSTRequest", 400, "The body of your POST request is not well-formed multipart/form-data."
)
MaxPostPreDataLengthExceeded = _error(
    "MaxPostPreDataLengthExceeded", 400, "Your POST request fields preceeding the upload file was too large."
)
IllegalLocationConstraintException = _error(
    "IllegalLocationConstraintException", 400, "The location constraint is incompatible with this endpoint."
)
InvalidLocationConstraint = _error(
    "InvalidLocationConstraint", 400, "The specified location-constraint is not valid."
)
InvalidPart = _error(
    "InvalidPart",
    400,
    "One or more of the specified parts could not be found. The part may not have been uploaded, "
    "or the specified entity tag may not match the part's entity tag.",
)
InvalidPartOrder = _error(
    "InvalidPartOrder", 400, "The list of parts was not in ascending order. Parts must be ordered by part number."
)
InvalidRequest = _error("InvalidRequest", 400, "Invalid Request")
InvalidStorageClass = _error("InvalidStorageClass", 400, "The storage class you specified is not valid.")
InvalidURI = _error("InvalidURI", 400, "Couldn't parse the specified URI.")
InvalidTag = _error("InvalidTag", 400, "The tag provided was not a valid tag.")
InvalidChunkSizeError = _error("InvalidChunkSizeError", 403, "Only the last chunk is allowed to have a size less than 8192 bytes")
KeyTooLongError = _error("KeyTooLongError", 400, "Your key is too long")
MalformedXML = _error(
    "MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema."
)
MetadataTooLarge = _error(
    "MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size."
)
RequestTimeout = _error(
    "RequestTimeout",
    400,
    "Your socket connection to the server was not read from or written to within the timeout period. "
    "Idle connections will be closed.",
)
UnexpectedContent = _error("UnexpectedContent", 400, "This request does not support content.")
XAmzContentSHA256Mismatch = _error(
    "XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed."
)
InvalidEncryptionAlgorithmError = _error(
    "InvalidEncryptionAlgorithmError", 400, "The encryption request you specified is not valid."
)
IllegalVersioningConfigurationException = _error(
    "IllegalVersioningConfigurationException", 400, "The Versioning element must be specified"
)
InvalidTargetBucketForLogging = _error(
    "InvalidTargetBucketForLogging", 400, "The target bucket for logging does not exist"
)
MalformedPolicy = _error("MalformedPolicy", 400, "Policies must be valid JSON and the first byte must be '{'")
# ACLs: S3's answer when a bucket's Object Ownership (BucketOwnerEnforced) disables them, and its
# validation of the ACL a request names.
AccessControlListNotSupported = _error("AccessControlListNotSupported", 400, "The bucket does not allow ACLs")
# CreateBucket naming an ACL that grants anyone but the owner, for a bucket that gets BucketOwnerEnforced.
InvalidBucketAclWithObjectOwnership = _error(
    "InvalidBucketAclWithObjectOwnership", 400, "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
)
MalformedACLError = _error(
    "MalformedACLError",
    400,
    "The XML you provided was not well-formed or did not validate against our published schema",
)
MissingSecurityHeader = _error("MissingSecurityHeader", 400, "Your request was missing a required header")
# HTTP framing (framing.py, payload.py): S3's words for a request line and headers over its limit,
# and for anything after an aws-chunked body's final chunk that is not a well-formed trailer.
RequestHeaderSectionTooLarge = _error(
    "RequestHeaderSectionTooLarge", 400, "Your request header section exceeds the maximum allowed size."
)
MalformedTrailerError = _error(
    "MalformedTrailerError",
    400,
    "The request contained trailing data that was not well-formed or did not conform to our published schema.",
)

# 403
AccessDenied = _error("AccessDenied", 403, "Access Denied")
InvalidObjectState = _error(
    "InvalidObjectState", 403, "The operation is not valid for the object's storage class"
)
# A CORS preflight that no rule allows (S3's spelling, "evalution" included).
AccessForbidden = _error(
    "AccessForbidden",
    403,
    "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
    "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not "
    "whitelisted by the resource's CORS spec.",
)
InvalidAccessKeyId = _error(
    "InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records."
)
RequestTimeTooSkewed = _error(
    "RequestTimeTooSkewed", 403, "The difference between the request time and the current time is too large."
)
SignatureDoesNotMatch = _error(
    "SignatureDoesNotMatch",
    403,
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method.",
)

# 404
NoSuchBucket = _error("NoSuchBucket", 404, "The specified bucket does not exist")
NoSuchKey = _error("NoSuchKey", 404, "The specified key does not exist.")
NoSuchUpload = _error(
    "NoSuchUpload",
    404,
    "The specified upload does not exist. The upload ID may be invalid, "
    "or the upload may have been aborted or completed.",
)
NoSuchTagSet = _error("NoSuchTagSet", 404, "The TagSet does not exist")
NoSuchVersion = _error("NoSuchVersion", 404, "The specified version does not exist.")
NoSuchBucketPolicy = _error("NoSuchBucketPolicy", 404, "The bucket policy does not exist")
NoSuchConfiguration = _error("NoSuchConfiguration", 404, "The specified configuration does not exist.")
NoSuchCORSConfiguration = _error("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist")
NoSuchLifecycleConfiguration = _error(
    "NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist"
)
NoSuchWebsiteConfiguration = _error(
    "NoSuchWebsiteConfiguration", 404, "The specified bucket does not have a website configuration"
)
NoSuchPublicAccessBlockConfiguration = _error(
    "NoSuchPublicAccessBlockConfiguration", 404, "The public access block configuration was not found"
)
ObjectLockConfigurationNotFoundError = _error(
    "ObjectLockConfigurationNotFoundError", 404, "Object Lock configuration does not exist for this bucket"
)
OwnershipControlsNotFoundError = _error(
    "OwnershipControlsNotFoundError", 404, "The bucket ownership controls were not found"
)
ReplicationConfigurationNotFoundError = _error(
    "ReplicationConfigurationNotFoundError", 404, "The replication configuration was not found"
)

# 405 / 409 / 411 / 412 / 416 / 417
MethodNotAllowed = _error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
BucketAlreadyExists = _error(
    "BucketAlreadyExists",
    409,
    "The requested bucket name is not available. The bucket namespace is shared by all users of the system. "
    "Please select a different name and try again.",
)
BucketAlreadyOwnedByYou = _error(
    "BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket succeeded and you already own it."
)
BucketNotEmpty = _error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty")
InvalidBucketState = _error("InvalidBucketState", 409, "The request is not valid with the current state of the bucket.")
OperationAborted = _error(
    "OperationAborted", 409, "A conflicting conditional operation is currently in progress against this resource."
)
ConditionalRequestConflict = _error(
    "ConditionalRequestConflict", 409, "A conflicting operation occurred. Please retry."
)
# A key that would need a file where a folder is, or a folder where a file is: S3 has no such
# limit, a filesystem does. Codes as versitygw names them, so clients that know one know both.
ObjectParentIsFile = _error(
    "ObjectParentIsFile", 409, "Object parent already exists as a file; a key cannot be both an object and a prefix of another key."
)
ExistingObjectIsDirectory = _error(
    "ExistingObjectIsDirectory", 409, "Existing object is a directory; a key cannot be both a prefix and an object here."
)
MissingContentLength = _error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")
PreconditionFailed = _error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
InvalidPartNumber = _error("InvalidPartNumber", 416, "The requested partnumber is not satisfiable")
InvalidRange = _error("InvalidRange", 416, "The requested range is not satisfiable")

# 500 / 501 / 503 / 507
InternalError = _error("InternalError", 500, "We encountered an internal error. Please try again.")
NotImplementedOp = _error(
    "NotImplementedOp", 501, "A header you provided implies functionality that is not implemented.", code="NotImplemented"
)
SlowDown = _error("SlowDown", 503, "Please reduce your request rate.")
# The upstream S3 of the cache mode failed us (unreachable, timed out, or a 5xx of its own): the
# client's request may well be fine, so it is told to retry, as S3 tells it on its own outages.
ServiceUnavailable = _error(
    "ServiceUnavailable", 503, "The upstream S3 could not be reached or answered an error. Please try again."
)
# The disk under ROOT is full (storage/faults.py). AWS has no such error; MinIO's code and 507
# (Insufficient Storage), which SDKs do not retry: resending a large body to a full disk only
# fills the network.
StorageFull = _error(
    "StorageFull",
    507,
    "The server's disk is full; nothing was stored. Delete objects or free space to proceed.",
    code="XMinioStorageFull",
)


class NotModified(S3Error):
    """304 is not an error in S3's eyes, but it ends a request the same way: headers, no body."""

    status = 304
    message = "Not Modified"


def not_implemented(operation: str) -> S3Error:
    return NotImplementedOp(f"{operation} is not implemented by s3serve.")


_BY_CODE: dict[str, type[S3Error]] = {}


def from_code(code: str, status: int, message: str | None = None, extra: dict[str, str] | None = None) -> S3Error:
    """The error another S3 answered with (an upstream's ``<Code>``, and the elements it named the
    fault with): its class here when there is one, else a plain S3Error carrying that code and
    status."""
    if not _BY_CODE:
        for value in list(globals().values()):
            if isinstance(value, type) and issubclass(value, S3Error) and value is not S3Error:
                _BY_CODE[getattr(value, "error_code", value.__name__)] = value
    cls = _BY_CODE.get(code)
    if cls is None:
        # Not remembered: an upstream could otherwise grow the table without bound.
        cls = _error(code, status, message or code)
    return cls(message or None, **(extra or {}))
