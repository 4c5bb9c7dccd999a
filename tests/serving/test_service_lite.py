"""The decision service returns the device-lite tier like any other (scenario ``lite``)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serving.app import EXAMPLE_STATE, create_app
from tests.serving.helpers import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OUTAGE = {**EXAMPLE_STATE, "throughput_mbps": [0.0] * 8, "device_memory_layers": 28}


def test_service_answers_with_the_lite_tier_on_a_dead_link():
    app = create_app(None, TOKEN, scenario="lite", watch_interval_s=None, handle_sighup=False)
    with TestClient(app) as c:
        r = c.post("/v1/decide", json=OUTAGE, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tier"] == "lite" and body["tier_index"] == 30 and body["action"] == 60
        assert body["meaning"] == "lite, drop" and body["cache"] == "drop" and body["split"] == 0
        schema = c.get("/openapi.json", headers=AUTH).json()
        tiers = schema["components"]["schemas"]["DecisionResponse"]["properties"]["tier"]["enum"]
        assert "lite" in tiers
