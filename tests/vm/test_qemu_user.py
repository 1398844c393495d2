"""The qemu-user lane: each ARM build of the port runs under qemu-user
(on the CPU model of its board) and passes the handshake over pipes; every
build is a static executable with no interpreter."""

from __future__ import annotations

import struct
import subprocess

import pytest
from framing import HELLO_UP, hello_frame, parse_hello, read_frame

pytestmark = pytest.mark.vm

ARCHES = ("x86_64", "arm64", "armhf", "raspi0")
MACHINE = {"x86_64": 62, "arm64": 183, "armhf": 40, "raspi0": 40}  # e_machine


@pytest.mark.parametrize("arch", ARCHES)
def test_static_binary(arch, have_qemu_user):
    _, b = have_qemu_user(arch)
    data = b.read_bytes()
    assert data[:4] == b"\x7fELF"
    is64 = data[4] == 2
    e_machine = struct.unpack_from("<H", data, 18)[0]
    assert e_machine == MACHINE[arch]
    phoff = struct.unpack_from("<Q" if is64 else "<I", data, 32 if is64 else 28)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54 if is64 else 42)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types, f"{b} has a PT_INTERP: not static"


@pytest.mark.parametrize("arch", ARCHES)
def test_hello_over_pipes(arch, have_qemu_user):
    prefix, b = have_qemu_user(arch)
    p = subprocess.Popen([*(prefix or []), str(b)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(hello_frame())
        p.stdin.flush()
        kind, body = read_frame(p.stdout.fileno(), timeout=30)
        assert kind == HELLO_UP
        assert parse_hello(body)[0] == 1
        p.stdin.close()  # end of input: the port exits
        assert p.wait(timeout=30) == 0, p.stderr.read().decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
