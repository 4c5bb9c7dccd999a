"""A device's throughput samples: the shortcut of ``samples_until`` against the general scan."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offload_rl.cell.device import Device, scan_samples

times_and_values = st.lists(
    st.tuples(st.floats(0.0, 50.0), st.floats(0.0, 100.0)), min_size=0, max_size=20
)


@given(times_and_values, st.floats(0.0, 60.0), st.integers(0, 10))
def test_samples_until_is_the_scan(samples: list[tuple[float, float]], t: float, h: int) -> None:
    """Unsorted times (a transfer may end after a later decision), any horizon and history."""
    device = Device.__new__(Device)  # only the sample lists are read
    device.sample_t = [s[0] for s in samples]
    device.sample_mbps = [s[1] for s in samples]
    assert device.samples_until(t, h) == scan_samples(device.sample_t, device.sample_mbps, t, h)


def test_a_sample_measured_after_t_is_skipped() -> None:
    """The newest sample was appended but ends after ``t``: the shortcut must not take it."""
    device = Device.__new__(Device)
    device.sample_t = [1.0, 2.0, 9.0, 3.0]
    device.sample_mbps = [10.0, 20.0, 90.0, 30.0]
    assert device.samples_until(5.0, 2) == ([20.0, 30.0], 3.0)
