"""The service's OpenAPI document, which FastAPI cannot write alone here.

The decision handlers read their raw body themselves (parsed in the micro-batcher's flush, not
by FastAPI), so FastAPI sees no body parameter: each declares its request body through
``openapi_extra`` (:func:`request_body`) and the body schemas are added to the components
(:func:`body_schemas`). With a token, every path but the open ones requires the bearer scheme.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serving.guard import OPEN_PATHS
from serving.schemas import DecisionBatchRequest, DecisionRequest
from serving.schemas_v2 import DeviceDecisionBatchRequest, DeviceDecisionRequest, EdgeStateReport


def request_body(model: type[BaseModel], examples: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a handler that parses the raw body itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                    "examples": examples,
                }
            },
        }
    }


def body_schemas() -> dict[str, Any]:
    _, schema = models_json_schema(
        [
            (m, "validation")
            for m in (
                DecisionRequest,
                DecisionBatchRequest,
                DeviceDecisionRequest,
                DeviceDecisionBatchRequest,
                EdgeStateReport,
            )
        ],
        ref_template="#/components/schemas/{model}",
    )
    return dict(schema.get("$defs", {}))


def install_openapi(app: FastAPI, token: str | None) -> None:
    """Make ``app.openapi()`` the document above (built once, on first use)."""

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(body_schemas())
        if token:
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            for path, ops in schema.get("paths", {}).items():
                if path not in OPEN_PATHS:
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
