"""In CI (``CI=true``) a test skipped for a missing system tool is an error; elsewhere it stays a skip."""

from __future__ import annotations

import pytest
from conftest import REPO

TESTS = """
import pytest

@pytest.mark.system_tool
@pytest.mark.skipif(True, reason="frobnicator not installed")
def test_marked_skipif():
    pass

@pytest.mark.system_tool
def test_marked_runtime_skip():
    pytest.skip("widget not installed")

def test_unmarked_skip():
    pytest.skip("not about a tool")
"""


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_skip_for_a_missing_tool_is_an_error_only_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_tools=TESTS)
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    if ci:
        result.assert_outcomes(errors=1, failed=1, skipped=1)
        result.stdout.fnmatch_lines(
            [
                "*CI=true, and a system tool is missing: *frobnicator not installed (./test.sh installs it*",
                "*CI=true, and a system tool is missing: *widget not installed*",
            ]
        )
    else:
        result.assert_outcomes(skipped=3)
        result.stdout.fnmatch_lines(["*frobnicator not installed*"])
