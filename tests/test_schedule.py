"""Expected-live schedules of live channels (monitord.schedule) and their Polyv config and gauge."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from helpers import parse_exposition, sim_knob, value

from monitord.config import ConfigError, parse
from monitord.schedule import LiveSchedule
from monitord.simulators import polyv as sim

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def at(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()  # type: ignore[misc]


def schedule(raw: Any) -> LiveSchedule:
    config = parse({"targets": [target("http://127.0.0.1:1", expected_live={"3880533": raw})]})
    return config.targets[0].expected_live["3880533"]  # type: ignore[no-any-return]


def target(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "acct", "source": "polyv", "url": url, "app_id": sim.DEFAULT_APP_ID,
            "app_secret": sim.DEFAULT_APP_SECRET, "channels": ["3880533", "2477096"], "interval": "10s",
            "timeout": "3s", **extra}


OFFICE = {"time_zone": "Asia/Shanghai", "windows": [{"days": "mon-fri", "start": "09:00", "end": "12:00"}]}


@pytest.mark.parametrize(("moment", "expected"), [
    ((2026, 12, 2, 9, 0), True),     # Wednesday, opening minute
    ((2026, 12, 2, 11, 59), True),
    ((2026, 12, 2, 12, 0), False),   # the end is exclusive: the event ended on schedule
    ((2026, 12, 2, 8, 59), False),
    ((2026, 12, 5, 10, 0), False),   # Saturday
    ((2026, 12, 7, 10, 0), True),    # Monday
])
def test_weekday_window_in_its_own_time_zone(moment: tuple[int, ...], expected: bool) -> None:
    assert schedule(OFFICE).expected_live(at(SHANGHAI, *moment)) is expected


def test_the_zone_not_the_host_decides() -> None:
    # 09:30 in Shanghai is 02:30 in Berlin (winter): inside the Shanghai window.
    assert schedule(OFFICE).expected_live(at(BERLIN, 2026, 12, 2, 2, 30))
    assert not schedule(OFFICE).expected_live(at(BERLIN, 2026, 12, 2, 9, 30))


def test_overnight_window() -> None:
    late = schedule({"time_zone": "Europe/Berlin", "windows": [{"days": ["fri", "sat"], "start": "22:00",
                                                                "end": "02:00"}]})
    assert late.expected_live(at(BERLIN, 2026, 12, 4, 23, 0))       # Friday night
    assert late.expected_live(at(BERLIN, 2026, 12, 5, 1, 30))       # past midnight, window of Friday
    assert not late.expected_live(at(BERLIN, 2026, 12, 6, 23, 0))   # Sunday
    assert late.expected_live(at(BERLIN, 2026, 12, 6, 1, 0)), "Saturday's window runs into Sunday"
    assert not late.expected_live(at(BERLIN, 2026, 12, 7, 1, 0)), "no Sunday window to run into Monday"


def test_always_and_whole_days() -> None:
    assert schedule("always").expected_live(0.0)
    weekend = schedule({"time_zone": "UTC", "windows": [{"days": "sat-sun", "start": "00:00", "end": "24:00"}]})
    assert weekend.expected_live(at(ZoneInfo("UTC"), 2026, 12, 6, 23, 59))
    assert not weekend.expected_live(at(ZoneInfo("UTC"), 2026, 12, 7, 0, 0))
    summer = schedule({"time_zone": "Europe/Berlin", "windows": [{"days": "sun", "start": "09:00", "end": "10:00"}]})
    assert summer.expected_live(at(BERLIN, 2026, 3, 29, 9, 30)), "the day DST starts"


@pytest.mark.parametrize(("raw", "key", "message"), [
    ({"time_zone": "Asia/Shangai", "windows": OFFICE["windows"]}, "expected_live.3880533.time_zone",
     "unknown IANA time zone"),
    ({"time_zone": "UTC", "windows": [{"days": "mon-fry", "start": "09:00", "end": "12:00"}]},
     "expected_live.3880533.windows[0].days", "not a day"),
    ({"time_zone": "UTC", "windows": [{"days": "mon", "start": "9", "end": "12:00"}]},
     "expected_live.3880533.windows[0].start", "HH:MM"),
    ({"time_zone": "UTC", "windows": [{"days": "mon", "start": "09:00", "end": "25:00"}]},
     "expected_live.3880533.windows[0].end", "HH:MM"),
    ({"time_zone": "UTC"}, "expected_live.3880533", "needs time_zone and at least one window"),
    ("sometimes", "expected_live.3880533", "expected `always`"),
    ({"always": True, "time_zone": "UTC"}, "expected_live.3880533", "takes no time_zone"),
])
def test_schedule_errors_name_the_key(raw: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse({"targets": [target("http://127.0.0.1:1", expected_live={"3880533": raw})]})
    problems = [p for p in exc.value.problems if p.startswith(f"targets[0].{key}:")]
    assert len(problems) == 1 and message in problems[0], exc.value.problems


def test_a_schedule_for_an_unwatched_channel_is_an_error() -> None:
    with pytest.raises(ConfigError) as exc:
        parse({"targets": [target("http://127.0.0.1:1", expected_live={"999": "always"})]})
    assert "not in channels: 999" in str(exc.value)


async def test_expected_live_gauge_next_to_live_state_and_a_stalled_push(start_sim, make_daemon, clock) -> None:
    clock.set(at(SHANGHAI, 2026, 12, 2, 11, 58))
    url, _ = await start_sim(sim, clock=clock)
    await sim_knob(url, "polyv", live=True)
    daemon = make_daemon([target(url, expected_live={"3880533": OFFICE})], clock=clock)
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "rtc_live_channel_expected_live", channel="3880533") == 1, "before the first poll"
    assert value(s, "rtc_live_channel_expected_live", channel="2477096") is None, "no schedule: absent"
    assert (await daemon.poll_all_once())["acct"].ok
    s = parse_exposition(daemon.store.render().decode())
    before = value(s, "rtc_live_stream_point_timestamp_seconds", channel="3880533")
    assert before is not None and value(s, "rtc_live_channel_live", channel="3880533") == 1

    # The push stalls: the vendor still says live, the newest point stops advancing.
    await sim_knob(url, "polyv", channel="3880533", stalled=True)
    clock.advance(60)
    assert (await daemon.poll_all_once())["acct"].ok
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "rtc_live_channel_live", channel="3880533") == 1
    assert value(s, "rtc_live_stream_point_timestamp_seconds", channel="3880533") <= before + 10
    assert value(s, "rtc_live_stream_point_timestamp_seconds", channel="2477096") > before + 40, "others advance"

    # 12:00: the event ends on schedule.
    await sim_knob(url, "polyv", channel="3880533", stalled=False, live=False)
    clock.advance(60)
    assert (await daemon.poll_all_once())["acct"].ok
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "rtc_live_channel_expected_live", channel="3880533") == 0
    assert value(s, "rtc_live_channel_live", channel="3880533") == 0


async def test_demo_has_one_channel_of_each_schedule_kind_and_raises_nothing_by_itself(start_sim, make_daemon,
                                                                                        clock) -> None:
    url, _ = await start_sim(sim, clock=clock)
    classes = next(t for t in sim.demo_targets(url, now=clock()) if t["name"] == "polyv-classes")
    daemon = make_daemon([classes], clock=clock)
    for _ in range(3):  # whatever the phase of the simulator's live cycle
        assert (await daemon.poll_all_once())["polyv-classes"].ok
        s = parse_exposition(daemon.store.render().decode())
        expected = {c: value(s, "rtc_live_channel_expected_live", channel=c) for c in ("1000001", "1000002", "1000003")}
        live = {c: value(s, "rtc_live_channel_live", channel=c) for c in ("1000001", "1000002", "1000003")}
        assert expected == {"1000001": 1, "1000002": 1, "1000003": 0}
        assert live == expected, "live exactly when expected: no interruption, an event ended on schedule"
        clock.advance(600)
    await sim_knob(url, "polyv", channel="1000002", live=False)
    assert (await daemon.poll_all_once())["polyv-classes"].ok
    s = parse_exposition(daemon.store.render().decode())
    assert value(s, "rtc_live_channel_live", channel="1000002") == 0, "an interruption while expected live"
    assert value(s, "rtc_live_channel_expected_live", channel="1000002") == 1
