"""CORS as S3 applies it: a bucket's CORSConfiguration rules, their validation, and matching a
browser's request against them. Pure functions over strings: no aiohttp, no storage.

S3's matching (Amazon S3 user guide, "How does Amazon S3 evaluate the CORS configuration"): the
first rule whose AllowedOrigin matches the Origin, whose AllowedMethod holds the method (the
Access-Control-Request-Method of a preflight), and whose AllowedHeader entries match every header
named in Access-Control-Request-Headers wins. An AllowedOrigin or AllowedHeader may hold one '*'
matching any run of characters; header names compare case-insensitively.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors, s3xml

METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
MAX_RULES = 100
MAX_AGE = 2**31 - 1
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
_RULE_ELEMENTS = frozenset({"ID", "AllowedMethod", "AllowedOrigin", "AllowedHeader", "ExposeHeader", "MaxAgeSeconds"})


@dataclass(frozen=True)
class Rule:
    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    id: str | None = None

    @functools.cached_property
    def _header_patterns(self) -> tuple[str, ...]:
        return tuple(h.lower() for h in self.allowed_headers)

    @property
    def any_origin(self) -> bool:
        """An AllowedOrigin of exactly '*': S3 then answers '*' and no credentials."""
        return "*" in self.allowed_origins

    def allows(self, origin: str, method: str, headers: Iterable[str] = ()) -> bool:
        if method not in self.allowed_methods:
            return False
        if not any(_matches(pattern, origin) for pattern in self.allowed_origins):
            return False
        patterns = self._header_patterns
        return all(any(_matches(pattern, header) for pattern in patterns) for header in headers)


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _matches(pattern: str, value: str) -> bool:
    if "*" not in pattern:
        return pattern == value
    return _glob(pattern).fullmatch(value) is not None


def requested_headers(value: str | None) -> list[str]:
    """Access-Control-Request-Headers as S3 echoes it back: lower-cased names, in request order."""
    if not value:
        return []
    return [name.strip().lower() for name in value.split(",") if name.strip()]


def find_rule(rules: Iterable[Rule], origin: str, method: str, headers: Iterable[str] = ()) -> Rule | None:
    wanted = tuple(headers)
    for rule in rules:
        if rule.allows(origin, method, wanted):
            return rule
    return None


def response_headers(rule: Rule, origin: str, requested: list[str] | None = None) -> dict[str, str]:
    """The Access-Control-* headers of an answer the rule allowed. ``requested``: the headers a
    preflight asked for (an actual request gets no Access-Control-Allow-Headers)."""
    headers = {"Access-Control-Allow-Origin": "*" if rule.any_origin else origin}
    if not rule.any_origin:
        headers["Access-Control-Allow-Credentials"] = "true"
    headers["Access-Control-Allow-Methods"] = ", ".join(rule.allowed_methods)
    if requested:
        headers["Access-Control-Allow-Headers"] = ", ".join(requested)
    if rule.expose_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule.expose_headers)
    if rule.max_age is not None:
        headers["Access-Control-Max-Age"] = str(rule.max_age)
    headers["Vary"] = VARY
    return headers


# -- the document ---------------------------------------------------------------------------------


def _texts(item: Mapping[str, Any], name: str) -> tuple[str, ...]:
    if name in item and item[name] is None:
        return ("",)  # an empty element is one empty value (S3 keeps an empty AllowedOrigin)
    return tuple(s3xml.text(value) for value in s3xml.as_list(item.get(name)))


def _one_wildcard(kind: str, values: Iterable[str]) -> None:
    for value in values:
        if value.count("*") > 1:
            raise errors.InvalidRequest(f'{kind} "{value}" can not have more than one wildcard.')


def parse(config: Mapping[str, Any]) -> tuple[Rule, ...]:
    """The rules of a parsed CORSConfiguration (``s3xml.parse_document``), validated as
    PutBucketCors validates them."""
    if set(config) - {"CORSRule"}:
        raise errors.MalformedXML()
    items = s3xml.as_list(config.get("CORSRule"))
    if not 1 <= len(items) <= MAX_RULES:
        raise errors.MalformedXML()
    rules = []
    for item in items:
        if not isinstance(item, dict) or set(item) - _RULE_ELEMENTS:
            raise errors.MalformedXML()
        methods, origins = _texts(item, "AllowedMethod"), _texts(item, "AllowedOrigin")
        if not methods or not origins:
            raise errors.MalformedXML()
        for method in methods:
            if method not in METHODS:
                raise errors.InvalidRequest(f"Found unsupported HTTP method in CORS config. Unsupported method is {method}")
        headers = _texts(item, "AllowedHeader")
        _one_wildcard("AllowedOrigin", origins)
        _one_wildcard("AllowedHeader", headers)
        max_age = None
        if item.get("MaxAgeSeconds") is not None:
            raw = s3xml.text(item["MaxAgeSeconds"]).strip()
            # An integer (S3's is 32 bits), in ASCII digits: str.isdigit alone takes any script's.
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > MAX_AGE:
                raise errors.MalformedXML()
            max_age = int(raw)
        rule_id = s3xml.text(item["ID"]) if item.get("ID") is not None else None
        if rule_id is not None and len(rule_id) > 255:
            raise errors.InvalidArgument("The ID of a CORS rule must be at most 255 characters long.")
        rules.append(Rule(methods, origins, headers, _texts(item, "ExposeHeader"), max_age, rule_id))
    return tuple(rules)


def to_document(rules: Iterable[Rule]) -> dict[str, Any]:
    """The CORSConfiguration content GetBucketCors answers, in S3's element order."""
    items = []
    for rule in rules:
        item: dict[str, Any] = {}
        if rule.id is not None:
            item["ID"] = rule.id
        for name, values in (
            ("AllowedHeader", rule.allowed_headers),
            ("AllowedMethod", rule.allowed_methods),
            ("AllowedOrigin", rule.allowed_origins),
            ("ExposeHeader", rule.expose_headers),
        ):
            if values:
                item[name] = list(values)
        if rule.max_age is not None:
            item["MaxAgeSeconds"] = str(rule.max_age)
        items.append(item)
    return {"CORSRule": items}


def load(document: bytes) -> tuple[Rule, ...]:
    """The rules of a stored CORSConfiguration document."""
    return parse(s3xml.parse_document(document, "CORSConfiguration"))
