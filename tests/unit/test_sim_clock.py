"""Simulated time: Go durations as Flux's API writes them, clocks whose waits pass faster than real time."""

from __future__ import annotations

import time

import pytest

from fluxops.sim.clock import ScaledClock, VirtualClock, format_duration, parse_duration, rfc3339


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("1m30s", 90),
        ("10m0s", 600),
        ("1h", 3600),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("0", 0),
    ],
)
def test_go_durations_parse_as_flux_api_takes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10", "1d", "m", "1m 30s", "-"])
def test_a_duration_go_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "30s"),
        (60, "1m0s"),
        (300, "5m0s"),
        (3600, "1h0m0s"),
        (90, "1m30s"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
    ],
)
def test_durations_print_as_go_prints_them_in_flux_messages(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_rfc3339_is_the_api_servers_timestamp() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


def test_a_scaled_clock_lets_a_minute_pass_in_a_sixtieth_of_it() -> None:
    clock = ScaledClock(factor=600.0)
    before, real = clock.now(), time.monotonic()
    clock.sleep(60)  # one simulated minute: 0.1 s
    elapsed = time.monotonic() - real
    assert 0.09 <= elapsed < 1.0
    assert clock.now() - before >= 59


def test_a_virtual_clock_jumps_without_sleeping_and_never_goes_back() -> None:
    clock = VirtualClock(start=1000.0)
    real = time.monotonic()
    clock.advance(1000.0 + 3600)
    clock.advance(1000.0)
    assert time.monotonic() - real < 0.5
    assert clock.now() == 4600.0 and clock.elapsed() == 3600.0
