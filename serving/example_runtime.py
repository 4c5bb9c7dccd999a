"""An example edge runtime: places a stream of chat requests through :class:`DecisionClient`.

    python -m serving.example_runtime [--url http://127.0.0.1:8000] [--requests 20]
                                      [--token T] [--scenario default] [--seed 0] [--api 2]

It plays a device of the scenario: requests come from the scenario's workload, the uplink
from one of its traces (the device measures its mean throughput every second), and the device
remembers which sessions it asked the edge to keep. For every request it prints what it chose
and who decided (the service, or the local fallback when the service is down or slow). It uses
``offload_rl`` only, no gymnasium: a runtime on a device has no simulator. ``--api 2`` asks
``POST /v2/decide`` with what the device itself knows (the service then has the edge's state
from the edge runtime; this device simulates no heat or radio, so it reports nominal and
connected) and prints the service's ``edge_state``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from offload_rl.device_view import (
    SessionMemory,
    decision_state,
    kept_kv_tokens,
    latest_period,
    measured_throughput,
)
from offload_rl.features import DecisionState
from offload_rl.scenario import Scenario, load_scenario
from offload_rl.scenario_facts import load_scenario_traces, scenario_facts
from offload_rl.workloads import Request
from serving.client import ClientDecision, DecisionClient, DeviceState


class SimulatedDevice:
    """The device side of a scenario: its requests, its link measurements, what it kept.

    The edge's occupancy and load are not simulated here (a real runtime reads them from the
    edge's reports): it reports an empty cache at a load of 0.3.
    """

    EDGE_KV_OCCUPANCY = 0.0
    EDGE_LOAD = 0.3

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.facts = scenario_facts(scenario)
        self.n_layers = self.facts.n_layers
        self.rng = np.random.default_rng(seed)
        uplinks, _ = load_scenario_traces(scenario)
        self.uplink = uplinks[int(self.rng.integers(len(uplinks)))]
        self.offset = float(self.rng.uniform(0.0, self.uplink.duration_s))
        self.workload = self.facts.workload()
        self.kept: dict[int, tuple[int, int]] = {}  # session -> (split, tokens) kept
        self.memory = SessionMemory()

    def requests(self, n: int) -> list[Request]:
        return self.workload.sample(self.rng, n)

    def state(self, req: Request, private: bool, slo: tuple[float, float]) -> DecisionState:
        """What the device knows when ``req`` must be placed."""
        net = self.scenario.network
        H, period = net.throughput_history, net.throughput_sample_s
        samples = measured_throughput(
            self.uplink,
            self.offset,
            latest_period(req.arrival_s, period) - H,
            H,
            period,
            net.throughput_noise,
            self.rng,
        )
        return decision_state(
            req,
            throughput_mbps=samples.tolist(),
            rtt_ms=net.rtt_edge_ms,
            private=private,
            slo=slo,
            cached=self.kept.get(req.session_id, (None, 0)),
            edge_kv_occupancy=self.EDGE_KV_OCCUPANCY,
            edge_load=self.EDGE_LOAD,
            device_memory_layers=self.facts.device_memory_layers,
            memory=self.memory,
        )

    @staticmethod
    def device_state(req: Request, s: DecisionState) -> DeviceState:
        """The device's own part of ``s`` (:meth:`state`) for ``POST /v2/decide``."""
        return DeviceState(
            throughput_mbps=s.throughput_mbps,
            rtt_ms=s.rtt_ms,
            new_tokens=s.new_tokens,
            context_tokens=s.context_tokens,
            turn=s.turn,
            private=s.private,
            slo_ttft_s=s.slo_ttft_s,
            slo_tpot_s=s.slo_tpot_s,
            cached_split=s.cached_split,
            cached_tokens=s.cached_tokens,
            device_memory_layers=s.device_memory_layers,
            prev_output_tokens=s.prev_output_tokens,
            since_last_turn_s=s.since_last_turn_s,
            radio_state="connected",
            session_id=str(req.session_id),
        )

    def remember(self, req: Request, decision: ClientDecision) -> None:
        """Apply the cache half of the decision to what the device believes is kept."""
        self.memory.remember(req)
        if decision.keep and decision.tier != "cloud":
            split = self.n_layers if decision.tier == "device" else decision.split
            tokens = kept_kv_tokens(req.context_tokens, req.new_tokens, req.output_tokens)
            self.kept[req.session_id] = (split, tokens)
        else:
            self.kept.pop(req.session_id, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.example_runtime", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="decision service URL")
    parser.add_argument("--token", default=None, help="bearer token of the service")
    parser.add_argument("--requests", type=int, default=20, help="requests to place")
    parser.add_argument("--scenario", default="default", help="scenario the device plays")
    parser.add_argument("--timeout", type=float, default=0.25, help="service timeout, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--api", type=int, choices=(1, 2), default=1, help="1: /v1/decide, 2: /v2/decide"
    )
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    with DecisionClient(
        args.url, timeout=args.timeout, token=args.token, scenario=scenario
    ) as client:
        device = SimulatedDevice(scenario, args.seed)
        wl = scenario.workload
        shares = [c.share for c in wl.slo_classes]
        sessions: dict[int, tuple[bool, tuple[float, float]]] = {}
        print(f"{'#':>3} {'sess':>4} {'turn':>4} {'mbps':>7} {'priv':>4}  {'choice':<20} source")
        for i, req in enumerate(device.requests(args.requests)):
            if req.session_id not in sessions:
                c = wl.slo_classes[int(device.rng.choice(len(shares), p=shares))]
                private = bool(device.rng.random() < wl.private_share)
                sessions[req.session_id] = (private, (c.ttft_s, c.tpot_s))
            private, slo = sessions[req.session_id]
            state = device.state(req, private, slo)
            if args.api == 2:
                d = client.decide_device(device.device_state(req, state))
            else:
                d = client.decide(state)
            device.remember(req, d)
            why = f" ({d.reason})" if d.reason else ""
            why += f" [edge {d.edge_state}]" if d.edge_state else ""
            print(
                f"{i:>3} {req.session_id:>4} {req.turn:>4} {state.throughput_mbps[-1]:>7.2f} "
                f"{'yes' if private else 'no':>4}  {d.meaning:<20} {d.source} "
                f"{d.policy_version[:16]}{why}"
            )
        print(
            f"service answered {client.stats['service']}, local fallback {client.stats['fallback']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
