"""An import error in our own code fails the suite: no test file skips on it.

``pytest.importorskip`` (or a skip on ImportError) is for optional third-party
packages; for ``sam_model`` or ``napari_sam`` it would turn a broken import
into quietly skipped tests.
"""

from __future__ import annotations

import re
from pathlib import Path

OWN = ("sam_model", "napari_sam")
SKIP_ON_OWN = re.compile(r"importorskip\(\s*[\"']({})".format("|".join(OWN)))


def test_no_test_file_skips_on_our_own_imports():
    tests = Path(__file__).parent
    offenders = [f"{p.relative_to(tests)}:{n}" for p in sorted(tests.rglob("*.py"))
                 for n, line in enumerate(p.read_text().splitlines(), start=1)
                 if SKIP_ON_OWN.search(line)]
    assert not offenders, f"importorskip of our own package in {offenders}"
