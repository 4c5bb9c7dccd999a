"""A stand-in for an edge runtime's metrics endpoint: vLLM's ``/metrics`` text, served locally.

For the tests, the serving benchmark and demos, where no vLLM server runs. The text is written
by hand from vLLM's metric definitions (``PrometheusStatLogger`` in
``vllm/v1/metrics/loggers.py``, vllm-project/vllm commits a6f0308 and 005a810): the names, HELP
strings, types and labels (``model_name``, ``engine``) of the scheduler gauges, the KV usage
gauge under its old name (``vllm:gpu_cache_usage_perc``), its new one
(``vllm:kv_cache_usage_perc``) or both, the ``vllm:cache_config_info`` info gauge (labels = the
CacheConfig), counters with ``_total`` and ``_created`` and a histogram with ``_bucket``,
``_count`` and ``_sum``, as ``prometheus_client`` renders them, beside the process metrics a
Python server exports. It is not a recording of a live server (none was reachable).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "meta-llama/Llama-3.2-3B-Instruct"


def vllm_metrics_text(
    running: int = 3,
    waiting: int = 0,
    kv_usage: float = 0.25,
    names: str = "both",
    engines: int = 1,
    num_gpu_blocks: int | None = 7722,
    block_size: int = 16,
    prompt_tokens: tuple[int, float] = (12, 14160.0),  # (count, sum) of finished requests
) -> str:
    """The metrics text of a vLLM server with ``engines`` data-parallel engines, each with
    ``running`` / ``waiting`` requests and ``kv_usage`` of its KV blocks in use. ``names``:
    the KV gauge's ``old`` name, its ``new`` name, or ``both`` (vLLM 0.10-0.11 sets both)."""
    lab = [f'engine="{e}",model_name="{MODEL}"' for e in range(engines)]
    out = [
        "# HELP python_gc_objects_collected_total Objects collected during gc",
        "# TYPE python_gc_objects_collected_total counter",
        'python_gc_objects_collected_total{generation="0"} 12041.0',
        'python_gc_objects_collected_total{generation="1"} 2201.0',
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        "process_resident_memory_bytes 2.147483648e+09",
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        *[f"vllm:num_requests_running{{{x}}} {float(running)}" for x in lab],
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        *[f"vllm:num_requests_waiting{{{x}}} {float(waiting)}" for x in lab],
    ]
    if names in ("old", "both"):
        out += [
            "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage. "
            "DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
            "# TYPE vllm:gpu_cache_usage_perc gauge",
            *[f"vllm:gpu_cache_usage_perc{{{x}}} {kv_usage!r}" for x in lab],
        ]
    if names in ("new", "both"):
        out += [
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            *[f"vllm:kv_cache_usage_perc{{{x}}} {kv_usage!r}" for x in lab],
        ]
    out += [
        "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of "
        "queried tokens.",
        "# TYPE vllm:prefix_cache_queries_total counter",
        *[f"vllm:prefix_cache_queries_total{{{x}}} 40960.0" for x in lab],
        "# HELP vllm:prefix_cache_queries_created Prefix cache queries, in terms of number of "
        "queried tokens.",
        "# TYPE vllm:prefix_cache_queries_created gauge",
        *[f"vllm:prefix_cache_queries_created{{{x}}} 1.7649e+09" for x in lab],
        "# HELP vllm:request_success_total Count of successfully processed requests.",
        "# TYPE vllm:request_success_total counter",
        *[f'vllm:request_success_total{{{x},finished_reason="stop"}} 11.0' for x in lab],
        *[f'vllm:request_success_total{{{x},finished_reason="length"}} 1.0' for x in lab],
        "# HELP vllm:request_prompt_tokens Number of prefill tokens processed.",
        "# TYPE vllm:request_prompt_tokens histogram",
    ]
    count, total = prompt_tokens
    for x in lab:
        for le in ("1.0", "2.0", "5.0", "10.0", "20.0", "50.0", "100.0", "200.0", "500.0"):
            out.append(f'vllm:request_prompt_tokens_bucket{{{x},le="{le}"}} 0.0')
        for le in ("1000.0", "2000.0", "5000.0", "+Inf"):
            out.append(f'vllm:request_prompt_tokens_bucket{{{x},le="{le}"}} {float(count)}')
        out.append(f"vllm:request_prompt_tokens_count{{{x}}} {float(count)}")
        out.append(f"vllm:request_prompt_tokens_sum{{{x}}} {total}")
    out += [
        "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig",
        "# TYPE vllm:cache_config_info gauge",
    ]
    blocks = "None" if num_gpu_blocks is None else str(num_gpu_blocks)
    for e in range(engines):
        out.append(
            f'vllm:cache_config_info{{block_size="{block_size}",cache_dtype="auto",'
            f'calculate_kv_scales="False",cpu_offload_gb="0",enable_prefix_caching="True",'
            f'engine="{e}",gpu_memory_utilization="0.9",is_attention_free="False",'
            f'num_cpu_blocks="None",num_gpu_blocks="{blocks}",'
            f'num_gpu_blocks_override="None",prefix_caching_hash_algo="builtin",'
            f'sliding_window="None",swap_space="4",swap_space_bytes="4294967296.0"}} 1.0'
        )
    return "\n".join(out) + "\n"


class MetricsServer:
    """A local HTTP server whose ``/metrics`` answers ``self.text`` (change it at will);
    ``self.status`` other than 200 answers that error."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.status = 200
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = owner.text.encode()
                self.send_response(owner.status if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
