"""Fixtures of the VM lane (issue 7): real kernels under qemu-system.

`vm_guest` is session-scoped and parametrized over the four guests
(x86_64, arm64, armhf, raspi0): each boots once per session, and the fixture
yields the serial path of the port running in it (a str, usable as
`niche.Port(serial=vm_guest)`), with the Guest object at `vm_guest.guest`.

When qemu cannot run here (not installed, or the guests are not built), the
tests are skipped with one line saying why; with NICHE_REQUIRE_VM=1 (CI)
that is a failure instead. Every test under tests/vm is marked `vm`.
On a failure, the guest's console log is added to the report; the logs stay
under build/vm/<arch>/.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guest import (  # noqa: E402
    ARCHES,
    REQUIRE,
    Guest,
    GuestError,
    lane_problem,
    port_binary,
    qemu_problem,
    qemu_user,
    vm_unavailable,
)

_GUESTS: dict[str, Guest] = {}


class GuestSerial(str):
    """The guest port's serial path, carrying the Guest that serves it."""

    guest: Guest


_LANE = {"problem": None, "skipped": 0, "boots": {}}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    mine = [i for i in items if Path(str(i.fspath)).resolve().is_relative_to(here)]
    for item in mine:
        item.add_marker(pytest.mark.vm)
    problem = lane_problem() if mine else None
    if problem and not REQUIRE:
        # one reason for the whole lane, said once in the summary
        _LANE["problem"] = problem
        for item in mine:
            if "vm_guest" in item.fixturenames:
                item.add_marker(pytest.mark.skip(reason=f"VM lane not run: {problem}"))
                _LANE["skipped"] += 1


def pytest_terminal_summary(terminalreporter):
    if _LANE["boots"]:
        terminalreporter.write_line("VM lane: booted to READY in " + ", ".join(
            f"{a} {t:.1f} s" for a, t in _LANE["boots"].items()))
    if _LANE["problem"]:
        terminalreporter.write_line(
            f"VM lane: {_LANE['skipped']} guest tests skipped: {_LANE['problem']}",
            yellow=True)


@pytest.fixture(scope="session", params=ARCHES)
def vm_guest(request):
    arch = request.param
    problem = qemu_problem(arch)
    if problem:
        vm_unavailable(problem)
    g = Guest(arch)
    try:
        path = g.start()
    except GuestError as e:
        if "qemu exited" in str(e) and "NICHE-" not in g.console_text():
            # qemu itself could not start (no accelerator, broken install...)
            vm_unavailable(f"{arch}: qemu cannot run: {g.logs(5)}")
        raise
    _GUESTS[arch] = g
    _LANE["boots"][arch] = g.boot_seconds
    s = GuestSerial(path)
    s.guest = g
    yield s
    g.stop()
    _GUESTS.pop(arch, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "vm_guest" in getattr(item, "fixturenames", ()):
        arch = getattr(item, "callspec", None) and item.callspec.params.get("vm_guest")
        g = _GUESTS.get(arch)
        if g:
            rep.sections.append((f"guest {arch} logs", g.logs()))


@pytest.fixture(scope="session")
def have_qemu_user():
    def check(arch):
        cmd = qemu_user(arch)
        if cmd and not shutil.which(cmd[0]):
            vm_unavailable(f"{cmd[0]} not found (make vm-deps installs qemu-user-static)")
        b = port_binary(arch)
        if not b.exists():
            vm_unavailable(f"{b} missing (make cross builds it)")
        return cmd, b
    return check

