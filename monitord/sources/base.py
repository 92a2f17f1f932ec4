"""The contract every source fulfils.

A source is one class: a pydantic Config model for its targets, a table of the metrics it
exposes, and `poll(out)`, which talks to the vendor through the vendor layer (monitord.vendor)
and adds samples to `out`. It raises PollError (with a reason from monitord.errors) when the poll
failed; anything else it raises is a bug and is reported as reason "internal". The runtime owns
timing, deadlines, the up/duration/error metrics and logging of failure transitions; a source
does none of that.

What the base class gives a source (README "Adding a source" shows all of it in one example):
- `self.client`: the target's VendorClient. Every vendor request goes through it (directly, or
  through `self.caller(auth=, retry=, pacing=)`), which counts it: the runtime tells a poll the
  vendor answered from a poll that asked the vendor nothing (a spent request budget, an empty
  watch list), which must neither refresh the target's success time nor flip it up.
- `self.shared`: objects shared with the other targets of its vendor domain (`budget_domain`):
  rate limiters, request budgets, bans, token caches, with their state files.
- `self.state_file(key, Model)`: the target's own typed state.
- `ctx` (SourceContext): the daemon's clock, the target's effective interval and timeout, `once`.

Time: every duration a source uses (holds, retention, windows, pacing) is divided by
`ctx.time_scale` (1 in production; `monitord demo --time-scale` raises it for tests), through
`Source.scaled` (the layer's pacing and retry policies do it themselves), so a test that shortens
Prometheus' timings shortens the exporter's alike. `ctx.interval` and `ctx.timeout` are scaled
already.

Adding a vendor: one module here, one line in sources/__init__.py, one simulator module in
monitord/simulators/, fixtures, a dashboard, an example config section and a README row. The
contract test (tests/test_contract.py) fails until all of them exist.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from aiohttp import web

from monitord import logs
from monitord.config import TargetConfig
from monitord.http import HttpClient
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder
from monitord.state import M, StateStore
from monitord.vendor.auth import Auth
from monitord.vendor.caller import Caller
from monitord.vendor.client import VendorClient
from monitord.vendor.pacing import Pacing
from monitord.vendor.persist import StateFile
from monitord.vendor.retry import NEVER, RetryPolicy
from monitord.vendor.scope import Scope, SharedScope, domain_of

C = TypeVar("C", bound=TargetConfig)


@dataclass
class SourceContext:
    """What the runtime gives a source: shared resources of the daemon and the target's timing."""

    http: HttpClient
    state: StateStore = field(default_factory=lambda: StateStore(None))
    clock: Callable[[], float] = time.time
    # True under `monitord once`: a poll must verify the target with at least one real request
    # (a source that may skip calls to save a vendor budget waits for room in it instead).
    once: bool = False
    # Testing aid (global.time_scale): every exporter timing is divided by it.
    time_scale: float = 1.0
    # The target's poll interval and deadline in force (its own or global.interval/timeout),
    # already under the time scale: what the scheduler runs it with.
    interval: float = 30.0
    timeout: float = 10.0
    # Daemon-scoped shared objects (budgets, tokens, bans); a source uses it as `self.shared`.
    scope: Scope = field(default_factory=Scope)


@dataclass(frozen=True)
class AccountStatus:
    """What the status page shows of a vendor budget or ban that targets share."""

    account: str  # a name for the shared budget; never a credential
    window: str  # what `limit` counts over, e.g. "requests per minute"
    limit: float | None = None
    used: float | None = None  # in the current window, when the source can know it
    throttled_until: float | None = None  # set while the vendor makes us wait (throttle, ban)
    note: str = ""  # one line, e.g. counts of throttling answers


class Source(abc.ABC, Generic[C]):
    kind: ClassVar[str]
    Config: ClassVar[type[TargetConfig]]
    metrics: ClassVar[Sequence[MetricDef]]
    description: ClassVar[str] = ""
    # Every `field` this source can report in monitord_parse_errors_total, so the counter exists
    # at 0 before the first bad value (tests/test_contract.py checks the list against the code).
    PARSE_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: C, ctx: SourceContext) -> None:
        self.config = config
        self.ctx = ctx
        self.log = logs.get(f"monitord.sources.{self.kind}", target=config.name, source=self.kind)
        # Every vendor request goes through it, which counts it (see vendor_requests).
        self.client = VendorClient(ctx.http, tls=config.tls, target=config.name)
        # The objects this target shares with the others of its vendor domain (budget_domain).
        self.shared: SharedScope = ctx.scope.bind(self.kind, domain_of(type(self), config), target=config.name,
                                                  state=ctx.state, clock=ctx.clock, time_scale=ctx.time_scale)

    @property
    def vendor_requests(self) -> int:
        """Requests sent to the vendor since start: the runtime compares it before and after a
        poll to tell a poll that asked the vendor something from one that did not."""
        return self.client.sent

    @classmethod
    def budget_domain(cls, config: TargetConfig) -> str | None:
        """What the vendor limits as one (an account, an app id, an API domain): targets with the
        same domain share a request budget or a ban, so sharding keeps them in one process.
        None: the target shares nothing and may go to any shard on its own."""
        return None

    @abc.abstractmethod
    async def poll(self, out: SnapshotBuilder) -> None:
        """Fetch from the vendor and add samples. Raise PollError on failure."""

    def self_metrics(self, out: SnapshotBuilder) -> None:
        """Samples that must survive a failed poll (request budgets, persisted counters).
        Called after every poll, whatever its outcome."""

    def account_status(self) -> AccountStatus | None:
        """The shared vendor budget or ban this target draws on, for the status page; None when
        the source has none."""
        return None

    def parse_fields(self) -> Iterable[str]:
        """The fields of monitord_parse_errors_total that exist at 0 from the start."""
        return self.PARSE_FIELDS

    def data_timestamp(self) -> float | None:
        """Unix time of the newest vendor data this target exposes, when that differs from the
        newest poll the vendor answered (a source that serves cached values); None: that poll."""
        return None

    async def close(self) -> None:
        """Release vendor-side resources (log out). Called on shutdown and on reload."""

    async def handle_api(self, action: str, request: web.Request) -> web.StreamResponse:
        """Requests to /api/v1/targets/{target}/{action} (callbacks, registrations)."""
        raise web.HTTPNotFound(text=f"target {self.config.name} has no API {action!r}\n")

    # Helpers for subclasses -------------------------------------------------------------------

    def scaled(self, seconds: float) -> float:
        """A duration of the vendor's or the config's, under the daemon's time scale."""
        return seconds / self.ctx.time_scale

    def caller(self, *, auth: Auth | None = None, retry: RetryPolicy = NEVER,
               pacing: Sequence[Pacing] = ()) -> Caller:
        """A Caller of this target's client with these policies, under the daemon's time scale."""
        return Caller(self.client, auth=auth, retry=retry, pacing=pacing, time_scale=self.ctx.time_scale)

    def state_file(self, key: str, model: type[M]) -> StateFile[M]:
        """This target's own state file `key` (`<target>.<key>.json`), read through `model`."""
        return StateFile(self.ctx.state, self.config.name, key, model, target=self.config.name)

