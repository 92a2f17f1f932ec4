"""Weekly windows in a time zone: when a live channel is expected to be live.

A channel that is not live outside its schedule (an event that ended on time) is no incident; a
channel that stops while it is expected live is one. The schedule is config, evaluated on the
daemon's clock in the schedule's IANA time zone (zoneinfo; the tzdata package supplies the
database where the system has none), so daylight saving time moves the windows with the zone.

Config, per channel: the word `always`, or
    {time_zone: Asia/Shanghai, windows: [{days: mon-fri, start: "09:00", end: "12:00"}]}
`days` is a range (`mon-fri`, `sat-sun`, `fri-mon` wraps), a single day, or a list of days and
ranges; `start`/`end` are HH:MM local times, `end` may be 24:00, and an end at or before the
start means the window runs past midnight into the next day (`22:00`-`02:00`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator

from monitord.config import StrictModel

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_RE: Final = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _days(value: Any) -> tuple[int, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError("expected days like mon-fri, sat, or a list of them")
    out: set[int] = set()
    for item in items:
        text = str(item).strip().lower()
        first, sep, last = text.partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise ValueError(f"{item!r} is not a day or day range (days are {', '.join(DAYS)}; e.g. mon-fri)")
        a = DAYS.index(first)
        b = DAYS.index(last) if sep else a
        out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return tuple(sorted(out))


def _minutes(value: Any) -> int:
    m = _TIME_RE.match(str(value).strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected a local time HH:MM (00:00-24:00), got {value!r}")
    minutes = int(m.group(1)) * 60 + int(m.group(2))
    if minutes > 24 * 60:
        raise ValueError(f"expected a local time HH:MM (00:00-24:00), got {value!r}")
    return minutes


Days = Annotated[tuple[int, ...], BeforeValidator(_days)]
LocalTime = Annotated[int, BeforeValidator(_minutes)]


class LiveWindow(StrictModel):
    days: Days = Field(description="Days the window starts on: mon-fri, sat, or a list.")
    start: LocalTime = Field(description="Local start time, HH:MM.")
    end: LocalTime = Field(description="Local end time, HH:MM (24:00 allowed; at or before start: next day).")


def _always(value: Any) -> Any:
    if value == "always":
        return {"always": True}
    if isinstance(value, str):
        raise ValueError(f"expected `always` or a mapping with time_zone and windows, got {value!r}")
    return value


class LiveSchedule(StrictModel):
    always: bool = Field(False, description="Expected live at every moment.")
    time_zone: str | None = Field(None, description="IANA time zone of the windows, e.g. Asia/Shanghai.")
    windows: tuple[LiveWindow, ...] = Field((), description="Weekly windows in which the channel is expected live.")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Asia/Shanghai, Europe/Berlin, UTC)") from None
        return value

    @model_validator(mode="after")
    def _complete(self) -> LiveSchedule:
        if self.always and (self.windows or self.time_zone):
            raise ValueError("`always` takes no time_zone or windows")
        if not self.always and not (self.time_zone and self.windows):
            raise ValueError("a schedule needs time_zone and at least one window (or is `always`)")
        return self

    def expected_live(self, unix: float) -> bool:
        if self.always:
            return True
        assert self.time_zone is not None
        local = datetime.fromtimestamp(unix, ZoneInfo(self.time_zone))
        for window in self.windows:
            # A window that started yesterday may still be open (past midnight).
            for back in (0, 1):
                day = local.date() - timedelta(days=back)
                if day.weekday() not in window.days:
                    continue
                opens = datetime(day.year, day.month, day.day, tzinfo=local.tzinfo) + timedelta(minutes=window.start)
                length = (window.end - window.start) % (24 * 60) or 24 * 60
                if opens <= local < opens + timedelta(minutes=length):
                    return True
        return False


Schedule = Annotated[LiveSchedule, BeforeValidator(_always)]
