"""Which data calls a poll makes, within the account's request budget.

Every call has a value tier and a natural period (per-minute data is not refreshed faster than
once a minute). When the configured set asks for more than the target's share of the budget,
the least valuable tiers are stretched (refreshed less often), never the budget. Within a poll
a target uses at most the share that accrued since its previous poll (budget / targets on the
account, per minute), so requests spread over the minute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from monitord.sources.huawei_rtc.config import AppConfig, HuaweiRtcConfig
from monitord.sources.huawei_rtc.metrics import NETWORK_METRICS, QUALITY_METRICS, SCALE_METRICS
from monitord.vendor import SlidingBudget


@dataclass(frozen=True)
class Call:
    api: str  # scale | scale_dimension | quality | network | abnormal_events | abnormal_dimension |
    #           failed_joins | running_rooms
    app: AppConfig
    metric: str = ""  # vendor metric name or dimension
    sdk_type: str = ""

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.api, self.app.id, self.app.room_id or "", self.metric, self.sdk_type)


# Value order: what users feel first (who is online), then whether they can join and hear/see,
# then network quality, then breakdowns.
TIERS = {
    "scale": 0,
    "quality": 1,
    "abnormal_events": 1,
    "network": 2,
    "scale_dimension": 3,
    "abnormal_dimension": 3,
    # Lists, below every realtime series: who failed to join, and how many rooms run.
    "failed_joins": 4,
    "running_rooms": 4,
}


def all_calls(c: HuaweiRtcConfig) -> list[Call]:
    calls: list[Call] = []
    for app in c.apps:
        calls += [Call("scale", app, m) for m in SCALE_METRICS]
        calls += [Call("quality", app, m, s) for s in c.sdk_types for m in QUALITY_METRICS]
        calls += [Call("network", app, m, s) for s in c.sdk_types for m in NETWORK_METRICS]
        if c.abnormal_events:
            calls.append(Call("abnormal_events", app))
            if c.event_distribution_window is not None:
                calls.append(Call("abnormal_dimension", app))
        calls += [Call("scale_dimension", app, d) for d in c.dimensions]
        if c.failed_joins:
            calls.append(Call("failed_joins", app))
        if c.running_rooms:
            calls.append(Call("running_rooms", app))
    return calls


class Planner:
    def __init__(self, config: HuaweiRtcConfig, budget: SlidingBudget, members: Callable[[], int], interval: float,
                 scaled: Callable[[float], float]) -> None:
        self.config = config
        self.budget = budget
        self.members = members  # targets drawing on the account's budget in this daemon
        # Only used before the first poll and as the "a bit early" slack; the pace itself
        # follows the time that actually passed between polls.
        self.interval = interval
        self.scaled = scaled
        self.calls = all_calls(config)
        self.last_refresh: dict[tuple[str, ...], float] = {}
        self.periods: dict[str, float] = {}
        self.credit = 0.0
        self._last_poll: float | None = None

    def base_period(self, api: str) -> float:
        if api in ("scale", "quality", "network"):
            return self.scaled(60.0)  # per-minute points: faster refreshes buy nothing
        if api == "abnormal_events":
            return self.scaled(float(self.config.events_interval))
        if api == "failed_joins":
            return self.scaled(float(self.config.failed_joins_window))  # one read per window
        return self.scaled(300.0)

    def share(self) -> float:
        return self.config.budget_per_minute / max(1, self.members())

    def plan_periods(self) -> dict[str, float]:
        """Per API, the refresh period that fits the target's share of the budget. First every
        call is reserved its slowest acceptable rate (one refresh per max_age, so nothing ages
        out); the rest of the share goes to the tiers in value order, each at full speed while it
        fits; the first tier that does not fit gets what is left, the later ones their floor.
        Rates are per budget window."""
        share = self.share()
        window = self.budget.window
        slowest = max(self.scaled(self.config.refresh_ceiling), window)
        need: defaultdict[str, float] = defaultdict(float)
        floor: defaultdict[str, float] = defaultdict(float)
        for call in self.calls:
            need[call.api] += window / self.base_period(call.api)
            floor[call.api] += window / max(slowest, self.base_period(call.api))
        left = max(0.0, share - sum(floor.values()))
        periods: dict[str, float] = {}
        for tier in sorted(set(TIERS.values())):
            apis = [a for a in need if TIERS[a] == tier]
            tier_need, tier_floor = sum(need[a] for a in apis), sum(floor[a] for a in apis)
            extra = tier_need - tier_floor
            rate = tier_need if extra <= left else tier_floor + left
            left = max(0.0, left - extra)
            stretch = tier_need / rate if rate > 0 else 1.0
            for api in apis:
                periods[api] = min(self.base_period(api) * stretch, max(slowest, self.base_period(api)))
        self.periods = periods
        return periods

    def due_calls(self, now: float) -> list[Call]:
        """Due calls, most valuable first; a call left waiting for half a period more than
        planned jumps the queue, so a tight budget stretches the low tiers but never starves them."""
        periods = self.plan_periods()
        due: list[tuple[int, int, float, Call]] = []
        for call in self.calls:
            last = self.last_refresh.get(call.key)
            period = periods[call.api]
            # Small slack: a poll that lands a moment early must not skip a whole interval.
            if last is None or now - last >= period - min(5.0, self.interval / 2):
                overdue = (now - last) / period if last is not None else 1.0
                due.append((0 if overdue >= 1.5 else 1, TIERS[call.api], -overdue, call))
        due.sort(key=lambda t: t[:3])
        return [c for *_, c in due]

    def pace(self, now: float) -> int:
        """Requests this target may make in this poll, so a minute's budget spreads over the
        minute: the target's share accrues with the time since its previous poll (the
        configured interval before the first), fractions carry over, at most one share."""
        share = self.share()
        elapsed = self.interval if self._last_poll is None else max(0.0, now - self._last_poll)
        self._last_poll = now
        window = self.budget.window
        self.credit = min(share, self.credit + share * min(elapsed, window) / window)
        return int(self.credit)

    def spent(self, sent: int) -> None:
        self.credit = max(0.0, self.credit - sent)
