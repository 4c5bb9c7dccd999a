"""A profile flattened into prefix sums, so that any layer range costs O(1) to evaluate.

The environment asks "how long do layers [k0, k1) take to prefill T tokens" for every request and,
for the oracle and the greedy baseline, for every split. Summing per-layer fits each time would be
O(L); with prefix sums of the polynomial coefficients it is a handful of float operations.
"""

from __future__ import annotations

from dataclasses import dataclass

from offload_rl.profiles import DecodeFit, LayerCost, PrefillFit, Profile

TOKEN_ID_BYTES = 4


@dataclass(frozen=True, slots=True)
class CompiledProfile:
    """Prefix sums of a :class:`Profile`'s per-layer fits (plain Python floats for speed).

    ``prefill_c*[k]`` is the sum of decoder layers ``[0, k)``; embedding and head are kept apart
    because they run on whichever side holds the first / last layer.
    """

    name: str
    n_layers: int
    prefill_c0: tuple[float, ...]
    prefill_c1: tuple[float, ...]
    prefill_c2: tuple[float, ...]
    decode_c0: tuple[float, ...]
    decode_c1: tuple[float, ...]
    kv_bytes_per_token: tuple[int, ...]  # prefix sums over decoder layers
    weight_bytes: tuple[int, ...]  # prefix sums over decoder layers
    activation_bytes_per_token: tuple[int, ...]  # at boundary k (0 = token ids)
    embed_prefill: tuple[float, float, float]
    embed_decode: tuple[float, float]
    head_prefill: tuple[float, float, float]
    head_decode: tuple[float, float]
    # Sliding-window layers, kept out of the prefix sums above: (layer index, window, prefill
    # c0, c1, c2, decode c0, c1, KV bytes per token). Empty for full-attention models.
    windowed: tuple[tuple[int, int, float, float, float, float, float, int], ...] = ()

    @classmethod
    def from_profile(cls, profile: Profile) -> CompiledProfile:
        """Build the prefix sums once per profile."""

        def prefix(values: list[float]) -> tuple[float, ...]:
            out = [0.0]
            for v in values:
                out.append(out[-1] + float(v))
            return tuple(out)

        def prefix_int(values: list[int]) -> tuple[int, ...]:
            out = [0]
            for v in values:
                out.append(out[-1] + int(v))
            return tuple(out)

        emb, head = profile.embedding, profile.head
        layers = [layer if layer.window is None else _zero_cost(layer) for layer in profile.layers]
        windowed = tuple(
            (i, w, lc.prefill.c0, lc.prefill.c1, lc.prefill.c2, lc.decode.c0, lc.decode.c1, kv)
            for i, lc in enumerate(profile.layers)
            if (w := lc.window) is not None and (kv := lc.kv_bytes_per_token) >= 0
        )
        return cls(
            name=f"{profile.model.name}@{profile.hardware}",
            n_layers=len(layers),
            prefill_c0=prefix([layer.prefill.c0 for layer in layers]),
            prefill_c1=prefix([layer.prefill.c1 for layer in layers]),
            prefill_c2=prefix([layer.prefill.c2 for layer in layers]),
            decode_c0=prefix([layer.decode.c0 for layer in layers]),
            decode_c1=prefix([layer.decode.c1 for layer in layers]),
            kv_bytes_per_token=prefix_int([layer.kv_bytes_per_token for layer in layers]),
            weight_bytes=prefix_int([layer.weight_bytes for layer in layers]),
            activation_bytes_per_token=tuple(int(b) for b in profile.activation_bytes_per_token),
            embed_prefill=(emb.prefill.c0, emb.prefill.c1, emb.prefill.c2),
            embed_decode=(emb.decode.c0, emb.decode.c1),
            head_prefill=(head.prefill.c0, head.prefill.c1, head.prefill.c2),
            head_decode=(head.decode.c0, head.decode.c1),
            windowed=windowed,
        )

    def layers_prefill_s(self, k0: int, k1: int, tokens: float, cached: float = 0.0) -> float:
        """Seconds for decoder layers ``[k0, k1)`` to prefill ``tokens`` new tokens.

        With ``cached`` tokens already in the KV cache, the quadratic (attention) term is the
        increment from ``cached`` to ``cached + tokens`` positions: ``c2 * (n^2 + 2 n cached)``.
        """
        if k1 <= k0 or tokens <= 0:
            return 0.0
        c0 = self.prefill_c0[k1] - self.prefill_c0[k0]
        c1 = self.prefill_c1[k1] - self.prefill_c1[k0]
        c2 = self.prefill_c2[k1] - self.prefill_c2[k0]
        total = c0 + tokens * (c1 + (tokens + 2.0 * cached) * c2)
        for i, w, p0, p1, p2, *_ in self.windowed:
            if k0 <= i < k1:
                attended = _window_squares(cached + tokens, w) - _window_squares(cached, w)
                total += p0 + tokens * p1 + attended * p2
        return total

    def layers_decode_s(self, k0: int, k1: int, n_tokens: int, context: float) -> float:
        """Seconds for decoder layers ``[k0, k1)`` to decode ``n_tokens`` tokens one by one.

        The first of them attends to ``context`` earlier tokens, the last to
        ``context + n_tokens - 1``; the sum over the linear fit has a closed form.
        """
        if k1 <= k0 or n_tokens <= 0:
            return 0.0
        c0 = self.decode_c0[k1] - self.decode_c0[k0]
        c1 = self.decode_c1[k1] - self.decode_c1[k0]
        total = n_tokens * c0 + c1 * (n_tokens * context + n_tokens * (n_tokens - 1) / 2.0)
        for i, w, _p0, _p1, _p2, d0, d1, _kv in self.windowed:
            if k0 <= i < k1:
                seen = _window_context_sum(context + n_tokens, w) - _window_context_sum(context, w)
                total += n_tokens * d0 + d1 * seen
        return total

    def embed_prefill_s(self, tokens: float) -> float:
        """Seconds for the embedding of ``tokens`` tokens."""
        a, b, c = self.embed_prefill
        return a + tokens * (b + tokens * c)

    def head_first_token_s(self) -> float:
        """Seconds for the LM head at the end of prefill (logits of the last position only)."""
        a, b, c = self.head_prefill
        return a + b + c

    def embed_head_decode_s(self, n_tokens: int, context: float) -> float:
        """Seconds for embedding + head over ``n_tokens`` decode steps."""
        if n_tokens <= 0:
            return 0.0
        ctx_sum = n_tokens * context + n_tokens * (n_tokens - 1) / 2.0
        e0, e1 = self.embed_decode
        h0, h1 = self.head_decode
        return n_tokens * (e0 + h0) + (e1 + h1) * ctx_sum

    def edge_kv_bytes_per_token(self, k: int) -> int:
        """KV bytes per token held by the side that runs layers ``[k, L)``.

        Sliding-window layers are included per token; :meth:`edge_kv_bytes` bounds them.
        """
        return self.kv_bytes_per_token[self.n_layers] - self.kv_bytes_per_token[k]

    def edge_kv_bytes(self, k: int, tokens: int) -> int:
        """KV bytes the side that runs layers ``[k, L)`` holds for ``tokens`` tokens."""
        total = tokens * self.edge_kv_bytes_per_token(k)
        for i, w, *_, kv in self.windowed:
            if i >= k and tokens > w:
                total -= kv * (tokens - w)
        return total


def _zero_cost(layer: LayerCost) -> LayerCost:
    """A windowed layer's place in the full-attention prefix sums: nothing but its KV bytes."""
    return layer.model_copy(
        update={
            "prefill": PrefillFit(c0=0.0, c1=0.0, c2=0.0),
            "decode": DecodeFit(c0=0.0, c1=0.0),
        }
    )


def _window_squares(n: float, window: int) -> float:
    """Sum over positions p < n of (2 min(p, w-1) + 1): n^2 up to the window, then linear.

    The full-attention prefill's quadratic term over positions [a, b) is c2 (b^2 - a^2); with a
    window, each position past it costs what position w-1 did (LayerCost.prefill_s's rule).
    """
    if n <= window:
        return n * n
    return window * window + (n - window) * (2 * window - 1)


def _window_context_sum(n: float, window: int) -> float:
    """Sum over contexts c < n of min(c, w-1): the decode contexts a windowed layer sees."""
    if n <= window:
        return n * (n - 1) / 2.0
    return window * (window - 1) / 2.0 + (n - window) * (window - 1)
