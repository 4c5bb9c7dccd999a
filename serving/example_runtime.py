"""An example edge runtime: places a stream of chat requests through :class:`DecisionClient`.

    python -m serving.example_runtime [--url http://127.0.0.1:8000] [--requests 20]
                                      [--token T] [--scenario default] [--seed 0]

It plays a device of the scenario: requests come from the scenario's workload, the uplink
from one of its traces (the device measures its mean throughput every second), and the device
remembers which sessions it asked the edge to keep. For every request it prints what it chose
and who decided (the service, or the local fallback when the service is down or slow). It uses
``offload_rl`` only, no gymnasium: a runtime on a device has no simulator.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from offload_rl.features import DecisionState
from offload_rl.scenario import Scenario, load_scenario, load_scenario_traces
from offload_rl.workloads import Request, TokenScaling, load_workload
from serving.client import ClientDecision, DecisionClient


class SimulatedDevice:
    """The device side of a scenario: its requests, its link measurements, what it kept."""

    def __init__(self, scenario: Scenario, n_layers: int, seed: int) -> None:
        self.scenario = scenario
        self.n_layers = n_layers
        self.rng = np.random.default_rng(seed)
        wl = scenario.workload
        uplinks, _ = load_scenario_traces(scenario)
        self.uplink = uplinks[int(self.rng.integers(len(uplinks)))]
        self.offset = float(self.rng.uniform(0.0, self.uplink.duration_s))
        source = wl.source if wl.source == "default" else str(scenario.resolve_path(wl.source))
        self.workload = load_workload(
            source,
            TokenScaling(
                scale=wl.token_scale,
                max_context_tokens=wl.max_context_tokens,
                max_new_tokens=wl.max_new_tokens,
                max_output_tokens=wl.max_output_tokens,
            ),
        )
        self.kept: dict[int, tuple[int, int]] = {}  # session -> (split, tokens) kept
        self.last: dict[int, tuple[float, int]] = {}  # session -> (arrival, output tokens)
        mem = scenario.device.memory_layers
        self.memory_layers = n_layers if mem is None else min(mem, n_layers)

    def requests(self, n: int) -> list[Request]:
        return self.workload.sample(self.rng, n)

    def state(self, req: Request, private: bool, slo: tuple[float, float]) -> DecisionState:
        """What the device knows when ``req`` must be placed."""
        net = self.scenario.network
        period, H = net.throughput_sample_s, net.throughput_history
        end = float(np.floor((self.offset + req.arrival_s) / period) * period)
        samples = [
            self.uplink.mean_mbps(end - (H - i) * period, end - (H - i - 1) * period)
            * float(np.exp(self.rng.normal(0.0, net.throughput_noise)))
            for i in range(H)
        ]
        split, tokens = self.kept.get(req.session_id, (None, 0))
        prev = self.last.get(req.session_id)
        return DecisionState(
            throughput_mbps=samples,
            rtt_ms=net.rtt_edge_ms,
            new_tokens=req.new_tokens,
            context_tokens=req.context_tokens,
            turn=req.turn,
            private=private,
            slo_ttft_s=slo[0],
            slo_tpot_s=slo[1],
            cached_split=split,
            cached_tokens=min(tokens, req.context_tokens),
            edge_kv_occupancy=0.0,  # a real runtime reads these from the edge's reports
            edge_load=0.3,
            device_memory_layers=self.memory_layers,
            prev_output_tokens=prev[1] if prev else 0,
            since_last_turn_s=req.arrival_s - prev[0] if prev else 0.0,
        )

    def remember(self, req: Request, decision: ClientDecision) -> None:
        """Apply the cache half of the decision to what the device believes is kept."""
        self.last[req.session_id] = (req.arrival_s, req.output_tokens)
        if decision.keep and decision.tier != "cloud":
            split = self.n_layers if decision.tier == "device" else decision.split
            total = req.context_tokens + req.new_tokens + req.output_tokens
            self.kept[req.session_id] = (split, total)
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
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    with DecisionClient(
        args.url, timeout=args.timeout, token=args.token, scenario=scenario
    ) as client:
        device = SimulatedDevice(scenario, client.spec.n_layers, args.seed)
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
            d = client.decide(state)
            device.remember(req, d)
            why = f" ({d.reason})" if d.reason else ""
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
