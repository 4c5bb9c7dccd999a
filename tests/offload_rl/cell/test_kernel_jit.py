"""``kernel_jit.entry_point``: the one home of calling a kernel past numba's dispatcher.

A kernel with one compiled specialization is called through that specialization's entry
point (the same result, no per-call typing); with none or several (types the entry point
would unbox unchecked), the dispatcher stays.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from offload_rl.cell.kernel_jit import clear_stale_caches, entry_point, sources_digest  # noqa: E402


def _kernel() -> object:
    @numba.njit(nogil=True, _nrt=False)
    def scaled_sum(x: np.ndarray, w: float) -> float:
        total = 0.0
        for v in x:
            total += w * v
        return total

    return scaled_sum


def test_one_specialization_is_called_straight_with_the_same_result():
    kernel = _kernel()
    x = np.arange(5.0)
    expected = kernel(x, 0.5)  # the first call, through the dispatcher
    call = entry_point(kernel)
    assert call is not kernel
    assert call is next(iter(kernel.overloads.values())).entry_point
    assert call(x, 0.5) == expected == 5.0


def test_none_or_several_specializations_keep_the_dispatcher():
    kernel = _kernel()
    assert entry_point(kernel) is kernel  # never called: nothing compiled yet
    kernel(np.arange(3.0), 1.0)
    kernel(np.arange(3, dtype=np.int64), 1.0)  # a second specialization
    assert len(kernel.overloads) == 2
    assert entry_point(kernel) is kernel


def test_the_sources_digest_follows_every_source_file(tmp_path):
    (tmp_path / "cell").mkdir()
    (tmp_path / "cell" / "compiled_a.py").write_text("X = 1\n")
    (tmp_path / "columns.py").write_text("COL = 3\n")
    (tmp_path / "notes.txt").write_text("not a source")
    first = sources_digest(tmp_path)
    assert sources_digest(tmp_path) == first
    (tmp_path / "notes.txt").write_text("still not a source")
    assert sources_digest(tmp_path) == first
    (tmp_path / "columns.py").write_text("COL = 4\n")  # a constant a kernel freezes
    changed = sources_digest(tmp_path)
    assert changed != first
    (tmp_path / "cell" / "compiled_b.py").write_text("")
    assert sources_digest(tmp_path) not in (first, changed)


def test_caches_built_from_other_sources_are_cleared_once(tmp_path):
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    old = [cache / "compiled_a.advance-10.py311.nbi", cache / "compiled_a.advance-10.py311.0.nbc"]
    for path in old:
        path.write_bytes(b"machine code of the old helper")
    bytecode = cache / "compiled_a.cpython-311.pyc"
    bytecode.write_bytes(b"")
    clear_stale_caches("aaaa", [tmp_path])
    assert not any(path.exists() for path in old)
    assert bytecode.exists()  # Python's own cache is not numba's
    assert (cache / "kernels-aaaa.stamp").exists()
    fresh = cache / "compiled_a.advance-10.py311.nbi"
    fresh.write_bytes(b"built from the current sources")
    clear_stale_caches("aaaa", [tmp_path])  # the same sources: kept
    assert fresh.exists()
    clear_stale_caches("bbbb", [tmp_path])  # a source changed: cleared, stamped again
    assert not fresh.exists()
    assert sorted(p.name for p in cache.glob("kernels-*")) == ["kernels-bbbb.stamp"]


def test_a_folder_without_a_cache_gets_a_stamp(tmp_path):
    clear_stale_caches("cccc", [tmp_path])
    assert (tmp_path / "__pycache__" / "kernels-cccc.stamp").exists()
