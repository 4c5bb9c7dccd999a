"""The service's front door: checks that must hold before FastAPI parses anything.

A pure ASGI middleware (cheaper than Starlette's ``BaseHTTPMiddleware``, and it also sees the
404s): bearer token (``hmac.compare_digest``; only ``/healthz`` is open), body size limit (413,
from ``Content-Length`` and again while reading, for a client that lies or streams),
``application/json`` for the decision bodies (415), and the request count and latency metrics
of every request, refused ones included. The body it read travels on in the scope
(``BODY_SCOPE_KEY``), so a handler takes it without a second copy.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.metrics import ServiceMetrics

MAX_BODY_BYTES = 1024 * 1024
OPEN_PATHS = frozenset({"/healthz"})
BODY_SCOPE_KEY = "offload_rl.body"  # the guard puts the body it read here (handlers skip a copy)
JSON_BODY_PATHS = frozenset(
    {"/v1/decide", "/v1/decide/batch", "/v2/decide", "/v2/decide/batch", "/v1/edge/state"}
)
BODY_METHODS = ("POST", "PUT", "PATCH")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Refusal = tuple[int, dict[str, Any]]  # status and JSON body of an answer the guard gives itself

UNAUTHORIZED = {"message": "missing or wrong bearer token (Authorization: Bearer ...)"}


def _json_bytes(content: Any) -> bytes:
    return json.dumps(content, separators=(",", ":"), allow_nan=False).encode()


async def send_json(send: Send, status: int, content: Any, headers: Headers | None = None) -> None:
    """A whole JSON response, sent without FastAPI (the guard's own answers)."""
    body = _json_bytes(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _bearer_matches(headers: Headers, token: bytes) -> bool:
    auth = b""
    for k, v in headers:
        if k == b"authorization":
            auth = v
            break
    scheme, _, given = auth.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


class GuardMiddleware:
    """Checks that must hold before FastAPI parses anything, plus per-request metrics."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body_bytes: int,
        metrics: ServiceMetrics,
        known_paths: frozenset[str],
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in self.known_paths else "other"
        status_box = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = int(message["status"])
            await send(message)

        try:
            await self._guarded(scope, receive, send_wrapper, path)
        finally:
            self.metrics.observe_request(endpoint, status_box[0], time.perf_counter() - start)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        headers = scope.get("headers") or []
        token = self.token
        if token is not None and path not in OPEN_PATHS and not _bearer_matches(headers, token):
            await send_json(send, 401, UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
            return
        if scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(headers, path)
        if refusal is not None:
            await send_json(send, *refusal)
            return
        body = await self._read_body(receive, send)
        if body is None:
            return
        scope[BODY_SCOPE_KEY] = body
        sent = False

        async def replay() -> Message:  # hands the body to the app in one piece
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _refusal(self, headers: Headers, path: str) -> Refusal | None:
        """What the headers of a request with a body already rule out (400, 413, 415)."""
        content_type = b""
        length: int | None = None
        for k, v in headers:
            if k == b"content-type":
                content_type = v
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    return 400, {"message": "invalid Content-Length header"}
        if length is not None and length > self.max_body_bytes:
            return 413, self._too_large()
        if path in JSON_BODY_PATHS:
            media = content_type.split(b";", 1)[0].strip().lower()
            if media != b"application/json":
                shown = media.decode("latin-1")[:80] or "none"
                return 415, {"message": f"Content-Type must be application/json (got {shown})"}
        return None

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, read within the limit; ``None`` when the client left or sent too
        much (then the 413 has been sent)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_json(send, 413, self._too_large())
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> dict[str, Any]:
        return {"message": f"request body larger than {self.max_body_bytes} bytes"}
