"""The soak test (tests/soak/soak.py, `make soak`: ten minutes) for 30 seconds, in every
`make test`: mixed, hostile traffic through Envoy with the filter and through Envoy without it,
a receiver that misbehaves, and every pass criterion of the long run.

Over 30 seconds every criterion keeps its meaning but one weakens: resident memory must stay
within 10% of its value after the warm-up (the first 6 s) as in the long run, but a leak has
only 24 s to show, so only a gross one (about 13 MB) fails here. The filter Envoy's memory
measured flat to within 0.1% over such runs, far from the 10% margin, so the rule does not
fail by chance. The ten-minute `make soak` is the memory check that counts."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))

from soak import report, run  # noqa: E402


def test_thirty_seconds_of_hostile_traffic_change_no_answer_and_break_nothing(tmp_path):
    result = run(30, tmp_path, log=lambda line: None)
    text = report(result)
    assert result.passed, text
    # The traffic had every kind of request, and the filter saw every source fire.
    assert set(result.by_kind) >= {"plain", "admin", "huge-body", "invalid-utf8", "oversized-headers", "slow", "aborted", "truncated"}
    events = result.status_drained["events"]
    for source in ("traffic", "crud", "dao:crud", "balancer", "rate-limiting-advanced"):
        assert events[source] > 0, f"no {source} event:\n{text}"
    hooks = result.status_drained["hooks"]
    assert hooks["dead-letters"]["accepted"] > 0, text
    assert hooks["gone"]["dropped"] > 0, text  # after its 410, the hook delivers nothing more
    assert result.receiver.verified > 0, text
