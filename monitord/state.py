"""Small persistent state per target (event high-water marks, budgets, task lists, bans).

One JSON file per owner and key, written atomically (temp file, fsync, rename) so a crash leaves
either the old or the new state. Every file is read through a typed model (a StateModel
subclass declared next to the code that owns the state), here and nowhere else: a missing file is
a fresh start; a file that cannot be read (bytes that are not UTF-8, text that is not JSON, JSON
of the wrong shape, a non-finite number) is moved aside as `<name>.corrupt` for inspection,
counted by reason, logged once, and the caller starts from a fresh state. Never fatal.
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
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from monitord import logs

_SAFE = re.compile(r"[^A-Za-z0-9_.@-]")

# The reasons of monitord_state_errors_total, each exposed from 0.
REASONS: Final = ("not_utf8", "bad_json", "wrong_shape", "read_error", "write_error")


class StateModel(BaseModel):
    """The shape of one kind of state file. Keys added by a newer version are ignored, anything
    of the wrong type is not: the file is then set aside rather than half-trusted."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


M = TypeVar("M", bound=StateModel)


class StateStore:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, bytes] = {}
        self._memory_times: dict[str, float] = {}
        self.errors: Counter[tuple[str, str]] = Counter()  # (target, reason)
        self._reported: set[tuple[str, str]] = set()  # (file, reason) already logged
        self._log = logs.get("monitord.state")
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def _file(self, owner: str, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{_SAFE.sub('_', owner)}.{_SAFE.sub('_', key)}.json"

    def load(self, owner: str, key: str, model: type[M], *, target: str | None = None) -> M | None:
        """The stored state of `owner`, or None when there is none or it could not be used.
        Problems are counted under `target` (default: the owner), the target whose poll read it."""
        target = target or owner
        if self.directory is None:
            data = self._memory.get(f"{owner}\0{key}")
            if data is None:
                return None
            return model.model_validate_json(data)  # written by save() from a valid model
        path = self._file(owner, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._report(target, "read_error", path, str(exc.strerror))
            return None
        reason, detail, value = self._decode(data, model)
        if value is not None:
            self._reported = {r for r in self._reported if r[0] != str(path)}
            return value
        self._report(target, reason, path, detail, moved=self._move_aside(path))
        return None

    @staticmethod
    def _decode(data: bytes, model: type[M]) -> tuple[str, str, M | None]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return "not_utf8", f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8", None
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return "bad_json", str(exc)[:200], None
        try:
            return "", "", model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            return "wrong_shape", f"{exc.error_count()} problem(s), first {where}: {first['msg']}", None
        except RecursionError:
            return "wrong_shape", "nested too deeply", None

    @staticmethod
    def _move_aside(path: Path) -> str | None:
        aside = path.with_suffix(".corrupt")
        try:
            path.replace(aside)
        except OSError:
            return None
        return str(aside)

    def save(self, owner: str, key: str, model: type[M], value: Any, *, target: str | None = None) -> None:
        """Store `value` (a `model` or the data of one) for the next load. Data that does not fit
        the model is not written, so nothing is stored that could not be read back."""
        target = target or owner
        try:
            state = model.model_validate(value, strict=False)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            self._report(target, "write_error", Path(f"{owner}.{key}"), f"{where}: {first['msg']}")
            return
        self._write(owner, key, state.model_dump_json().encode(), target)

    def _write(self, owner: str, key: str, data: bytes, target: str) -> None:
        if self.directory is None:
            self._memory[f"{owner}\0{key}"] = data
            self._memory_times[f"{owner}\0{key}"] = time.time()
            return
        path = self._file(owner, key)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
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
                    out.setdefault(target, {})[key] = {"saved_at": self._memory_times.get(name, 0.0),
                                                       "value": json.loads(value)}
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
            except (OSError, ValueError, RecursionError):
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
        """Store a peer's copy, keeping its age (so a later comparison still sees which is newer).
        Stored as it came: the owner's typed load() judges it, like any file."""
        self._write(target, key, json.dumps(value, separators=(",", ":")).encode(), target)
        if self.directory is None:
            self._memory_times[f"{target}\0{key}"] = saved_at
            return
        try:
            os.utime(self._file(target, key), (saved_at, saved_at))
        except OSError as exc:
            self._report(target, "write_error", self._file(target, key), str(exc.strerror))

    def _report(self, target: str, reason: str, path: Path, detail: str, moved: str | None = None) -> None:
        self.errors[(target, reason)] += 1
        if (str(path), reason) in self._reported:
            return  # counted; said once already
        self._reported.add((str(path), reason))
        if reason == "write_error":
            action = "state kept in memory"
        elif moved is not None:
            action = "moved aside, starting from empty state"
        else:
            action = "starting from empty state"
        self._log.error("state_file_problem", target=target, reason=reason, path=str(path), detail=detail,
                        action=action, **({"moved_to": moved} if moved else {}))
