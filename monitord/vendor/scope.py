"""Objects that targets share within one daemon: an account's request budget, a token, a ban.

The runtime owns one `Scope` per set of shared resources (monitord.app.Resources: rebuilt when
the global or http settings change, or when a standby takes over) and hands it to every source
in its SourceContext. A source sees it bound to its vendor domain, as `Source.shared`
(`SharedScope`): the domain is what `Source.budget_domain` returns (an account, an API host), so
the targets that share an object are also the targets sharding keeps in one process; a source
without a domain gets a scope of its own target.

Shared objects are found by name within the domain and created by the first target that asks.
Each one that has settings (a rate, a limit) has them once: a target that asks for other
settings than those another live target holds is refused with SharedConflict (a reload then
fails and keeps the running configuration), never silently given the first target's. Targets
that a reload is replacing do not count (Scope.retiring), so a reload that changes a rate for
every target at once goes through.

Persisted state of a shared object lives in files named for what it is:
`<kind>@<domain>.<name>.json`, e.g. `huawei_rtc@<account>.data-requests.json`, read through the
state store's typed models; monitord.handover hands them over with the domain's targets.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from monitord.state import M, StateStore
from monitord.vendor.pacing import BanHold, BanState, BudgetState, RateLimiter, SlidingBudget
from monitord.vendor.persist import StateFile

if TYPE_CHECKING:
    from monitord.config import TargetConfig
    from monitord.sources.base import Source

T = TypeVar("T")


class SharedConflict(ValueError):
    """Two live targets ask for one shared object with different settings."""


@runtime_checkable
class Reconfigurable(Protocol):
    def reconfigure(self, settings: Any) -> None: ...


def shared_owner(kind: str, domain: str) -> str:
    """The owner name of a domain's state files in the state store, beside the targets' own."""
    return f"{kind}@{domain}"


def domain_of(source: type[Source[Any]], config: TargetConfig) -> str:
    """The domain a target's shared objects belong to: its budget domain, else the target."""
    return source.budget_domain(config) or f"target:{config.name}"


def shared_owners(targets: Iterable[TargetConfig], registry: Mapping[str, type[Source[Any]]]) -> set[str]:
    """The owners of the shared state files of these targets (for handover)."""
    return {shared_owner(t.source, domain_of(registry[t.source], t)) for t in targets if t.source in registry}


@dataclass
class _Entry:
    value: object
    settings: Hashable
    holders: dict[int, tuple[str, Hashable]] = field(default_factory=dict)  # handle -> (target, settings)


class Scope:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._handles = itertools.count(1)
        # Targets whose runtimes a reload in progress replaces or removes (set by the daemon).
        self.retiring: frozenset[str] = frozenset()

    def bind(self, kind: str, domain: str, *, target: str, state: StateStore, clock: Callable[[], float],
             time_scale: float = 1.0) -> SharedScope:
        return SharedScope(self, next(self._handles), kind, domain, target=target, state=state, clock=clock,
                           time_scale=time_scale)

    def _acquire(self, key: tuple[str, str, str], handle: int, target: str, cls: type[T], settings: Hashable,
                 factory: Callable[[], T]) -> T:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(factory(), settings)
        elif not isinstance(entry.value, cls):
            raise TypeError(f"shared {key[2]!r} of {key[0]}@{key[1]} is a {type(entry.value).__name__}, "
                            f"not a {cls.__name__}")
        elif entry.settings != settings:
            others = sorted({name for name, held in entry.holders.values()
                             if held != settings and name != target and name not in self.retiring})
            if others:
                raise SharedConflict(
                    f"{key[0]} targets {', '.join(others)} and {target} share {key[2]} of {key[1]} but configure "
                    f"it differently ({entry.settings} in force, {settings} asked): give them one value")
            if isinstance(entry.value, Reconfigurable):
                entry.value.reconfigure(settings)
            entry.settings = settings
        entry.holders[handle] = (target, settings)
        value = entry.value
        assert isinstance(value, cls)
        return value

    def _holders(self, key: tuple[str, str, str]) -> list[str]:
        entry = self._entries.get(key)
        return sorted(name for name, _ in entry.holders.values()) if entry else []

    def _release(self, handle: int) -> None:
        for entry in self._entries.values():
            entry.holders.pop(handle, None)


class SharedScope:
    """A target's view of the daemon scope, bound to its source kind and domain."""

    def __init__(self, scope: Scope, handle: int, kind: str, domain: str, *, target: str, state: StateStore,
                 clock: Callable[[], float], time_scale: float) -> None:
        self._scope = scope
        self._handle = handle
        self.kind = kind
        self.domain = domain
        self.owner = shared_owner(kind, domain)
        self.target = target
        self.state = state
        self.clock = clock
        self.time_scale = time_scale

    def get(self, name: str, cls: type[T], *, settings: Hashable = None,
            factory: Callable[[], T] | None = None) -> T:
        """The domain's object `name`, made by `factory` (default: `cls()`) for the first target
        that asks. `settings` must agree between live targets (see SharedConflict)."""
        return self._scope._acquire((self.kind, self.domain, name), self._handle, self.target, cls, settings,
                                    factory or cls)

    def holders(self, name: str) -> list[str]:
        """The live targets holding `name` (one entry per runtime: during a reload a target's
        new runtime joins before its old one leaves)."""
        return self._scope._holders((self.kind, self.domain, name))

    def state_file(self, key: str, model: type[M]) -> StateFile[M]:
        """The domain's state file `key` (`<kind>@<domain>.<key>.json`); problems are counted
        under this target."""
        return StateFile(self.state, self.owner, key, model, target=self.target)

    def rate_limiter(self, name: str, rate: float, period: float) -> RateLimiter:
        """`rate` requests per `period` seconds (vendor seconds: scaled here)."""
        period = period / self.time_scale
        return self.get(name, RateLimiter, settings=(rate, period),
                        factory=lambda: RateLimiter(rate, period, clock=time.monotonic))

    def budget(self, name: str, limit: int, window: float, *, assume_spent: bool = False,
               backoff: float = 15.0, max_backoff: float = 300.0) -> SlidingBudget:
        """At most `limit` requests per `window` seconds, persisted in `<kind>@<domain>.<name>`."""
        window = window / self.time_scale

        def make() -> SlidingBudget:
            budget = SlidingBudget(limit, window, clock=self.clock, backoff=backoff / self.time_scale,
                                   max_backoff=max_backoff / self.time_scale)
            file = self.state_file(name, BudgetState)
            budget.restore(file.load(), assume_spent=assume_spent)
            budget.on_change = lambda b: file.save(b.dump())
            return budget

        return self.get(name, SlidingBudget, settings=(limit, window), factory=make)

    def ban(self, name: str, hold: float, *, what: str = "polling") -> BanHold:
        """No request for `hold` seconds after a ban-like answer; persisted in `<kind>@<domain>.<name>`."""
        hold = hold / self.time_scale

        def make() -> BanHold:
            ban = BanHold(hold, clock=self.clock, what=what)
            file = self.state_file(name, BanState)
            ban.restore(file.load())
            ban.on_change = lambda b: file.save(b.dump())
            return ban

        return self.get(name, BanHold, settings=hold, factory=make)

    def release(self) -> None:
        """This target no longer holds anything (its runtime closed). The objects stay for a
        target that comes back."""
        self._scope._release(self._handle)
