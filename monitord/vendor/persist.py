"""A state file bound to its owner, key and typed model, so a source says once what a file is
and then only loads and saves it. Reading, validation, moving a bad file aside, counting and the
one log line all stay in monitord.state.StateStore."""

from __future__ import annotations

from typing import Any, Generic

from monitord.state import M, StateStore


class StateFile(Generic[M]):
    def __init__(self, store: StateStore, owner: str, key: str, model: type[M], *, target: str) -> None:
        self.store = store
        self.owner = owner  # a target's name, or a shared owner such as "huawei_rtc@<account>"
        self.key = key
        self.model = model
        self.target = target  # whose poll reads and writes it: problems are counted under it

    def load(self) -> M | None:
        """The stored state, or None: none yet, or unusable (then moved aside, counted, logged)."""
        return self.store.load(self.owner, self.key, self.model, target=self.target)

    def save(self, value: M | dict[str, Any]) -> None:
        self.store.save(self.owner, self.key, self.model, value, target=self.target)

    def __repr__(self) -> str:
        return f"StateFile({self.owner}.{self.key}, {self.model.__name__})"
