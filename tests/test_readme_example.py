"""The README's "Adding a source" code is the tested example, character for character."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_shows_the_tested_minimal_source() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- example:rooms_source -->\n```python\n(.*?)```\n<!-- end:rooms_source -->", readme,
                      re.DOTALL)
    assert block is not None, "README.md lost its example block"
    code = (ROOT / "examples" / "rooms_source.py").read_text(encoding="utf-8")
    assert block.group(1) == code[code.index("from __future__"):], (
        "README.md's example differs from examples/rooms_source.py (tested in tests/test_vendor_scope.py): copy it")
