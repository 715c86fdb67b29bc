"""The benchmarks run (tiny sample sizes): `make bench` must not rot. No timing is asserted."""

from __future__ import annotations

import pytest

from bench.run import _request_reply, bench_journal
from tests.brokers import Mosquitto

pytestmark = pytest.mark.timeout(60)


async def test_request_reply_bench_runs(mosquitto: Mosquitto) -> None:
    samples = await _request_reply(mosquitto.port, 5, nodelay=True)
    assert len(samples) == 5 and all(s > 0 for s in samples)


def test_journal_bench_runs() -> None:
    result = bench_journal(5)
    assert result["synchronous_FULL"]["n"] == 5
    assert result["full_over_normal_p50"] > 0
