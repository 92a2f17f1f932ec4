"""Small persistent state per target (event high-water marks, registered task ids).

One JSON file per target and key, written atomically (temp file, fsync, rename) so a crash
leaves either the old or the new state. A missing file is a fresh start; a corrupt one is
reported (log line and counter), moved aside for inspection, and rebuilt: never fatal.
Without a configured state_dir the state lives in memory only, which the daemon says at start.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from monitord import logs

# Every reason of monitord_state_errors_total, exposed at 0 from the start.
REASONS = ("corrupt", "read_error", "write_error")

_SAFE = re.compile(r"[^A-Za-z0-9_.@-]")


class StateStore:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, Any] = {}
        self._memory_times: dict[str, float] = {}
        self.errors: Counter[tuple[str, str]] = Counter()  # (target, reason)
        self._log = logs.get("monitord.state")
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def _file(self, target: str, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{_SAFE.sub('_', target)}.{_SAFE.sub('_', key)}.json"

    def load(self, target: str, key: str) -> Any:
        """The stored value, or None when there is none or it could not be read."""
        if self.directory is None:
            return self._memory.get(f"{target}\0{key}")
        path = self._file(target, key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._report(target, "read_error", path, str(exc.strerror))
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            self._report(target, "corrupt", path, str(exc))
            try:
                path.replace(path.with_suffix(".corrupt"))
            except OSError:
                pass
            return None

    def save(self, target: str, key: str, value: Any) -> None:
        if self.directory is None:
            self._memory[f"{target}\0{key}"] = json.loads(json.dumps(value))
            self._memory_times[f"{target}\0{key}"] = time.time()
            return
        path = self._file(target, key)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(value, fh, separators=(",", ":"), sort_keys=True)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            self._report(target, "write_error", path, str(exc.strerror))

    # Handover between replicas (monitord.handover): a target's files with their age, so the
    # freshest copy wins whichever replica has it.

    def export(self, target: str, others: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
        """{key: {"saved_at": unix time, "value": ...}} of every state file of `target`.
        `others` are the other target names: "a" must not take the files of "a.b"."""
        return self.export_many([target], [target, *others]).get(target, {})

    def export_many(self, targets: Iterable[str], names: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """export() of several targets with one look at the directory. `names`: every target
        name that may own files here, so each file goes to the longest name it starts with."""
        wanted = set(targets)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        if self.directory is None:
            for name, value in self._memory.items():
                target, _, key = name.partition("\0")
                if target in wanted:
                    out.setdefault(target, {})[key] = {"saved_at": self._memory_times.get(name, 0.0), "value": value}
            return out
        by_safe: dict[str, str] = {}
        for name in {*names, *wanted}:
            by_safe.setdefault(_SAFE.sub("_", name), name)
        try:
            paths = [p for p in self.directory.iterdir() if p.name.endswith(".json")]
        except OSError:
            return out
        for path in paths:
            stem = path.name[:-len(".json")]
            # The owner is the longest known name followed by a dot: "a.b.k" is a.b's, not a's.
            owner, cut = None, stem.rfind(".")
            while cut > 0:
                owner = by_safe.get(stem[:cut])
                if owner is not None:
                    break
                cut = stem.rfind(".", 0, cut)
            if owner is None or owner not in wanted:
                continue
            try:
                saved_at = path.stat().st_mtime
                value = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # being replaced, or corrupt: load() reports it when the owner reads it
            out.setdefault(owner, {})[stem[cut + 1:]] = {"saved_at": saved_at, "value": value}
        return out

    def saved_at(self, target: str, key: str) -> float | None:
        if self.directory is None:
            name = f"{target}\0{key}"
            return self._memory_times.get(name) if name in self._memory else None
        try:
            return self._file(target, key).stat().st_mtime
        except OSError:
            return None

    def adopt(self, target: str, key: str, value: Any, saved_at: float) -> None:
        """Store a peer's copy, keeping its age (so a later comparison still sees which is newer)."""
        self.save(target, key, value)
        if self.directory is None:
            self._memory_times[f"{target}\0{key}"] = saved_at
            return
        try:
            os.utime(self._file(target, key), (saved_at, saved_at))
        except OSError as exc:
            self._report(target, "write_error", self._file(target, key), str(exc.strerror))

    def _report(self, target: str, reason: str, path: Path, detail: str) -> None:
        self.errors[(target, reason)] += 1
        self._log.error("state_file_problem", target=target, reason=reason, path=str(path), detail=detail,
                        action="starting from empty state" if reason != "write_error" else "state kept in memory")
