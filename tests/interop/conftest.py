"""Fixtures for the interop matrix (API in mta.py's docstring).

The integration suite's conftest is loaded under the name integration_conftest
(two modules named conftest cannot share one run), and its proxy fixtures
are re-exported here. At the end pytest prints the matrix: one row per test
file (backends/test_exim4.py -> exim4), one column per test name.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("integration_conftest",
                                               HERE.parent / "integration" / "conftest.py")
integration_conftest = importlib.util.module_from_spec(_spec)
sys.modules["integration_conftest"] = integration_conftest
_spec.loader.exec_module(integration_conftest)

from integration_conftest import cert, proxy_for, pytest_runtest_makereport, start_proxy  # noqa: E402,F401
from mta import Container  # noqa: E402


def _containers(request, failed):
    started = []

    def start(name, conf_dir, **kw):
        c = Container(name, conf_dir, **kw).start()
        started.append(c)
        return c

    yield start
    for c in started:
        if failed():
            print("--- container %s (%s) ---\n%s" % (c.cname, c.name, c.logs()))
        c.stop()


@pytest.fixture
def container(request):
    """container(name, conf_dir, **Container keywords): started, and stopped after the test."""
    yield from _containers(request, lambda: getattr(request.node, "rep_call", None) is None
                           or request.node.rep_call.failed)


@pytest.fixture(scope="module")
def container_module(request):
    """The same, stopped after the module's last test (its logs shown if any test failed)."""
    failed_before = request.session.testsfailed
    yield from _containers(request, lambda: request.session.testsfailed > failed_before)


_results = {}


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        path, _, name = report.nodeid.partition("::")
        row = Path(path).stem.replace("test_", "", 1)
        column = name.split("[")[0].replace("test_", "", 1)
        if "[" in name:
            column += "[" + name.split("[", 1)[1]
        if hasattr(report, "wasxfail"):
            outcome = "xfail" if report.skipped else "XPASS"
        else:
            outcome = "skip" if report.skipped else report.outcome.replace("passed", "ok").replace("failed", "FAIL")
        cell = _results.setdefault((Path(path).parent.name, row), {})
        # A parametrised column is ok only if every case is.
        base = column.split("[")[0]
        cell[base] = outcome if cell.get(base, "ok") == "ok" else cell[base]


def pytest_terminal_summary(terminalreporter):
    """The matrix, transposed to fit a terminal: one line per feature."""
    tr = terminalreporter
    for group in sorted({g for g, _ in _results}):
        rows = {r: cells for (g, r), cells in sorted(_results.items()) if g == group}
        features = []
        for cells in rows.values():
            features += [f for f in cells if f not in features]
        tr.write_sep("=", "interop matrix: %s" % group)
        tr.write_line("%-34s %s" % ("", " ".join("%-10s" % r for r in rows)))
        for f in features:
            tr.write_line("%-34s %s" % (f, " ".join("%-10s" % rows[r].get(f, "-") for r in rows)))
