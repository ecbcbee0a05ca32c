"""benchmarks/profile_step.py: reading a Perfetto trace (kernels from the device's streams)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import profile_step  # noqa: E402


def _trace():
    meta = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "name": "thread_name", "pid": 2, "tid": 7, "args": {"name": "Stream #13"}},
        {"ph": "M", "name": "thread_name", "pid": 2, "tid": 8, "args": {"name": "XLA Ops"}},
    ]
    kernels = [  # two steps: a convolution, a fusion, a conversion; 10 us idle between steps
        {"ph": "X", "pid": 2, "tid": 7, "name": "sm90_xmma_fprop", "ts": 0, "dur": 60},
        {"ph": "X", "pid": 2, "tid": 7, "name": "loop_add_fusion_3", "ts": 60, "dur": 20},
        {"ph": "X", "pid": 2, "tid": 7, "name": "wrapped_convert_1", "ts": 80, "dur": 10},
        {"ph": "X", "pid": 2, "tid": 7, "name": "sm90_xmma_fprop", "ts": 100, "dur": 60},
        {"ph": "X", "pid": 2, "tid": 7, "name": "loop_add_fusion_3", "ts": 160, "dur": 20},
        {"ph": "X", "pid": 2, "tid": 7, "name": "wrapped_convert_1", "ts": 180, "dur": 10},
    ]
    ops = [{"ph": "X", "pid": 2, "tid": 8, "name": "convolution.1", "ts": 0, "dur": 190}]
    host = [{"ph": "X", "pid": 1, "tid": 1, "name": "block_until_ready", "ts": 0, "dur": 500}]
    return {"traceEvents": meta + kernels + ops + host}


def test_kernels_come_from_the_streams_and_are_grouped():
    found = profile_step.device_events(_trace())
    assert found["tracks"] == "device"
    assert len(found["kernels"]) == 6 and len(found["ops"]) == 1  # no host event, no op twice
    summary = profile_step.summarise(found["kernels"], wall_seconds=1.0, steps=2)
    assert summary["kernel_seconds"] == pytest.approx(180e-6)
    assert summary["kernel_seconds_per_step"] == pytest.approx(90e-6)
    assert summary["span_seconds"] == pytest.approx(190e-6)
    assert summary["busy_fraction"] == pytest.approx(180 / 190)
    assert summary["by_kind"]["conv"]["fraction"] == pytest.approx(120 / 180)
    assert summary["by_kind"]["fusion"]["fraction"] == pytest.approx(60 / 180)  # converts too
    assert summary["top"][0]["count"] == 2


def test_without_a_device_every_event_counts():
    trace = {"traceEvents": [e for e in _trace()["traceEvents"] if e.get("pid") == 1]}
    found = profile_step.device_events(trace)
    assert found["tracks"] == "host" and len(found["kernels"]) == 1
