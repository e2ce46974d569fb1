"""Replies as plain values, and the checks a JSON body passes before it is read.

Both ways a request reaches a handler use these: aiohttp's (``matchlab.httpjson``
turns a ``Reply`` into a ``web.Response``) and the edge's fast lane
(``matchlab.edge.fastlane`` writes it to the socket itself). So a status, a
reason or a limit is decided in one place, whichever way the request came.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp.helpers import parse_content_type  # aiohttp's own parser: both paths read a header alike

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"  # what a request without Content-Type is taken to be (RFC 2616)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()  # besides Content-Type and Content-Length


def json_reply(status: int, doc: dict) -> Reply:
    return Reply(status, orjson.dumps(doc))


def rejected(status: int, reason: str, order_id: str | None = None) -> Reply:
    return json_reply(status, {"status": "REJECTED", "orderId": order_id, "reason": reason})


def media_type(content_type_header: str | None) -> str:
    """The media type of a Content-Type header, as aiohttp's ``request.content_type`` reads it."""
    return OCTET_STREAM if content_type_header is None else parse_content_type(content_type_header)[0]


def body_refusal(media: str, content_length: int | None, limit: int) -> Reply | None:
    """415 for a body that is not JSON, 413 for one declared over ``limit``; None if it may be read."""
    if media != JSON:
        return rejected(415, f"content-type must be {JSON}, got {media!r}")
    if content_length is not None and content_length > limit:
        return rejected(413, f"body of {content_length} bytes exceeds the {limit}-byte limit")
    return None


def body_timeout_refusal(seconds: float) -> Reply:
    """408 for a body that did not arrive within the edge's body timeout (the connection is then closed)."""
    return rejected(408, f"request body not received within {seconds:g}s")
