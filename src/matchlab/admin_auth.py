"""The per-stack admin token: state-changing endpoints need ``Authorization: Bearer <token>``.

``/admin/*`` and ``/seed`` (the gateway's ``/seed/{shardId}``) empty or fill
the books, so anyone who can reach a port could spoil an experiment. The
harness generates one token per stack and hands it to the services in the
``ADMIN_TOKEN`` environment variable (a Secret on Kubernetes) and to its own
clients; it is never logged or written to a report.

A service started by hand without ``ADMIN_TOKEN`` keeps ``/orders``,
``/health`` and ``/metrics`` open and refuses every protected route with 401
and a reason saying how to enable it: there is no default token, so there is
nothing to guess.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from matchlab.errors import ConfigError

ADMIN_TOKEN_ENV = "ADMIN_TOKEN"
MIN_TOKEN_CHARS = 16
PROTECTED_PREFIXES = ("/admin/", "/seed")
NOT_CONFIGURED = (
    f"admin and seed endpoints are disabled: this service was started without {ADMIN_TOKEN_ENV} "
    f"(set it to a secret of at least {MIN_TOKEN_CHARS} characters and send `Authorization: Bearer <it>`)"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    """A fresh random token for one stack (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_from_env(env: Mapping[str, str]) -> str | None:
    """The configured token, or None when unset (protected routes then answer 401)."""
    raw = env.get(ADMIN_TOKEN_ENV, "").strip()
    if not raw:
        return None
    if len(raw) < MIN_TOKEN_CHARS:
        # The value itself is never echoed: the message may end up in a log.
        raise ConfigError(f"{ADMIN_TOKEN_ENV} is too short ({len(raw)} characters; at least {MIN_TOKEN_CHARS})")
    return raw


def bearer(token: str | None) -> dict[str, str]:
    """The request header a client sends; empty without a token (the server then answers 401)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def is_protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES)


def _refusal(status: int, reason: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="matchlab-admin"'} if status == 401 else None
    return web.Response(status=status, body=orjson.dumps({"status": "REJECTED", "reason": reason}),
                        content_type="application/json", headers=headers)


def check(token: str | None, authorization: str | None) -> web.Response | None:
    """None if the request may pass; else the 401 (no or unusable credentials) or 403 (wrong token)."""
    if token is None:
        return _refusal(401, NOT_CONFIGURED)
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return _refusal(401, "this endpoint changes state: send `Authorization: Bearer <admin token>`")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):  # constant time
        return _refusal(403, "the admin token is wrong")
    return None


def admin_middleware(token: str | None):
    """aiohttp middleware guarding the protected routes; checked before the body is read."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else ""
        if is_protected(request.path) or is_protected(canonical):
            refused = check(token, request.headers.get("Authorization"))
            if refused is not None:
                return refused
        return await handler(request)

    return guard
