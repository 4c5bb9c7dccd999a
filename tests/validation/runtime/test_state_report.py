"""The reference edge runtime reports its state to the decision service (push)."""

from __future__ import annotations

import threading
import time

import pytest

from offload_rl.actions import ActionLayout
from offload_rl.traces import Trace
from serving.app import create_app
from serving.edge_state.mapping import SessionEntry
from serving.edge_state.settings import EdgeSettings
from tests.serving.helpers import free_port
from validation.runtime.device import DeviceRuntime, Turn
from validation.runtime.edge import EdgeServer
from validation.runtime.model import SplitModel, small_arch
from validation.runtime.state_report import StateReporter

pytest.importorskip("transformers")


def test_the_runtime_pushes_its_sessions_and_kv_to_the_service():
    import uvicorn

    app = create_app(None, None, watch_interval_s=None, handle_sighup=False,
                     edge=EdgeSettings(push=True, max_age_s=60.0))  # fmt: skip
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reporter = StateReporter(f"http://127.0.0.1:{port}")
    model = SplitModel.build(small_arch("gpt2", n_layers=2), seed=3, init_std=0.5)
    per_token = 2 * 2 * model.arch.shape.n_kv_heads * model.arch.shape.head_dim * 4  # 2 layers
    edge = EdgeServer(threads=None, kv_capacity_bytes=1000 * per_token, reporter=reporter)
    edge.start_thread()
    device = DeviceRuntime(model, "127.0.0.1", edge.port, threads=None, seed=11)
    link = Trace.constant(200.0, duration_s=60.0)
    device.set_link(link, link, one_way_s=0.001)
    try:
        layout = ActionLayout(2)
        device.run(Turn(0, 20, 0, 6, 1.0, 0), layout.encode(1, 1))  # keeps layer 1 of 25
        device.run(Turn(1, 20, 0, 6, 2.0, 1), layout.encode(0, 1))  # keeps both layers of 25
        assert reporter.flush() and reporter.failed == 0 and reporter.sent >= 2
        view, status = app.state.edge_store.current()
        assert status == "fresh" and view.edge_running == 0 and view.edge_waiting == 0
        assert view.pool_tokens == 1000
        assert view.sessions == {
            "1": SessionEntry(tokens=25, split=0, recency_rank=0),
            "0": SessionEntry(tokens=25, split=1, recency_rank=1),
        }
        # layer 1 of 25 tokens + both layers of 25 tokens, of a 2-layer pool of 1000 tokens
        assert view.edge_kv_occupancy == pytest.approx((25 + 50) / 2 / 1000)
    finally:
        device.close()
        edge.close()
        reporter.close()
        server.should_exit = True
        thread.join(timeout=10)
