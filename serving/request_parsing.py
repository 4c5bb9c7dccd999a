"""Request bodies parsed and validated, and the 422 every failure becomes.

One format for every validation error, whether pydantic or the service found it: a ``message``
naming the first field (``body.states.1.cached_split: ...``) and a ``detail`` list of loc, msg
and type. The offending input is never echoed: it may be huge, or a NaN that would make the
error response itself invalid JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from serving.schemas import DecisionBatchRequest, DecisionRequest
from serving.schemas_v2 import DeviceDecisionRequest

log = logging.getLogger("offload_rl.serving")

MAX_ERRORS = 20  # reported per response
BodyModel = TypeVar("BodyModel", bound=BaseModel)


def clean_errors(errors: Any) -> list[dict[str, Any]]:
    """loc, msg and type of each error; the input is not echoed (it may be NaN or huge)."""
    out = []
    for err in list(errors)[:MAX_ERRORS]:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        out.append(
            {"loc": loc, "msg": str(err.get("msg", ""))[:300], "type": str(err.get("type", ""))}
        )
    return out


def error_text(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    errors = clean_errors(exc.errors() if isinstance(exc, RequestValidationError) else [])
    return JSONResponse(status_code=422, content={"message": error_text(errors), "detail": errors})


async def _unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"message": "internal error"})


def add_error_handlers(app: FastAPI) -> None:
    """422 for invalid requests (in the format above), a bare 500 for anything unexpected."""
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)


def parse_body(model: type[BodyModel], body: bytes) -> BodyModel:
    """Parse and validate in one pass (pydantic's JSON parser: several times faster than
    ``json.loads`` plus validation, bounded recursion, no NaN literals)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def layer_errors(
    req: DecisionRequest | DeviceDecisionRequest, n_layers: int, prefix: tuple[Any, ...]
) -> list[dict[str, Any]]:
    """The one bound that depends on the policy served: a kept split within its layers."""
    if req.cached_split is not None and req.cached_split > n_layers:
        return [
            {
                "loc": (*prefix, "cached_split"),
                "msg": f"must be at most {n_layers} (the model's layers; {n_layers} = device)",
                "type": "less_than_equal",
            }
        ]
    return []


def decision_parser(n_layers: int) -> Callable[[bytes], DecisionRequest]:
    """Body of ``POST /v1/decide`` -> request, or a :class:`RequestValidationError`."""

    def parse_decision(body: bytes) -> DecisionRequest:
        req = parse_body(DecisionRequest, body)
        if req.cached_split is not None and req.cached_split > n_layers:
            raise RequestValidationError(layer_errors(req, n_layers, ("body",)))
        return req

    return parse_decision


def batch_parser(n_layers: int) -> Callable[[bytes], DecisionBatchRequest]:
    """Body of ``POST /v1/decide/batch`` -> request, or one error naming every bad state."""

    def parse_batch(body: bytes) -> DecisionBatchRequest:
        req = parse_body(DecisionBatchRequest, body)
        errors: list[dict[str, Any]] = []
        for i, s in enumerate(req.states):
            errors += layer_errors(s, n_layers, ("body", "states", i))
        if errors:
            raise RequestValidationError(errors)
        return req

    return parse_batch
