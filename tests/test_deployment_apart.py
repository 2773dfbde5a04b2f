"""The deployment runtimes' tests (tests/test_deploy_*.py), run in a fresh pytest process.

ncnn and OpenVINO, loaded into a process that had already run many other tests, crashed it
with a kernel-raised SIGSEGV at the next child's exit, delivered to torch's DataLoader SIGCHLD
handler (docs/deployment.md, "Known problems"; conftest's `_sigchld_left_as_found` now
removes that state between tests). The deployment runtimes still run as the commands run
them, in a process of their own: the main run ignores those files (pyproject's addopts) and
this test runs them apart, printing their own report when they fail, so that a native crash
in a runtime cannot end the whole suite.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

DEPLOY_TESTS = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_deploy_*.py"))


def test_the_deployment_tests_pass_in_a_fresh_process() -> None:
    assert DEPLOY_TESTS, "no tests/test_deploy_*.py found"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *DEPLOY_TESTS, "-q", "-ra", "-p", "no:cacheprovider",
         "-o", "addopts=", "-m", "not slow"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    report = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"pytest {' '.join(DEPLOY_TESTS)} exited {done.returncode}:\n{report}"
    assert " passed" in done.stdout.splitlines()[-1], report
