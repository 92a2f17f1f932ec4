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
from collections import Counter
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

    def _report(self, target: str, reason: str, path: Path, detail: str) -> None:
        self.errors[(target, reason)] += 1
        self._log.error("state_file_problem", target=target, reason=reason, path=str(path), detail=detail,
                        action="starting from empty state" if reason != "write_error" else "state kept in memory")
