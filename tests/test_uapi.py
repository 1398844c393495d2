"""niche.uapi: kernel structures from one cffi cdef (issue 4).

The layouts are checked against the kernel ABI (sizes and offsets the
kernel headers give on every target niche supports), and the structures
are used for real: TUNSETIFF with struct ifreq in a new network namespace,
and the siginfo of a trapped signal."""

from __future__ import annotations

import os

import niche
import pytest
from niche import uapi

T = 10


def test_sizes_and_offsets_are_the_kernel_abi():
    assert uapi.sizeof("struct sock_filter") == 8
    assert [uapi.offsetof("struct sock_filter", f) for f in ("code", "jt", "jf", "k")] == [0, 2, 3, 4]
    assert uapi.sizeof("struct seccomp_data") == 64
    assert uapi.offsetof("struct seccomp_data", "nr") == 0
    assert uapi.offsetof("struct seccomp_data", "arch") == 4
    assert uapi.offsetof("struct seccomp_data", "instruction_pointer") == 8
    assert uapi.offsetof("struct seccomp_data", "args") == 16
    assert uapi.sizeof("struct ifreq") == 40
    assert uapi.offsetof("struct ifreq", "ifr_flags") == 16
    assert uapi.sizeof("struct signalfd_siginfo") == 128
    assert uapi.offsetof("struct signalfd_siginfo", "ssi_syscall") == 84
    assert uapi.offsetof("struct signalfd_siginfo", "ssi_arch") == 96
    # sock_fprog holds a pointer: host layout, never sent to a port.
    assert uapi.offsetof("struct sock_fprog", "filter") == uapi.ffi.sizeof("void *")


def test_one_cdef_one_ffi():
    assert "struct sock_filter" in uapi.CDEF
    assert uapi.ffi.typeof("struct ifreq").kind == "struct"


def test_pack_and_unpack_round_trip():
    data = uapi.pack("struct ifreq", ifr_name="tap0", ifr_flags=0x1002)
    assert len(data) == 40
    assert data[:5] == b"tap0\0"
    ifr = uapi.unpack("struct ifreq", data)
    assert uapi.ffi.string(ifr.ifr_name) == b"tap0"
    assert ifr.ifr_flags == 0x1002
    d = uapi.to_dict(ifr)
    assert d["ifr_name"] == b"tap0" and d["ifr_flags"] == 0x1002
    assert "_ifr_pad" not in d
    # Unset fields are zero; a longer buffer is fine; the result owns its memory.
    sd = uapi.unpack("struct seccomp_data", uapi.pack("struct seccomp_data", nr=59, args=[1, 2]) + b"junk")
    assert (sd.nr, sd.arch, list(sd.args)) == (59, 0, [1, 2, 0, 0, 0, 0])
    assert uapi.to_dict(sd)["args"] == [1, 2, 0, 0, 0, 0]


def test_pack_array():
    prog = uapi.pack_array("struct sock_filter",
                           [{"code": 6, "k": 1}, {"code": 0x15, "jt": 1, "jf": 2, "k": 3}])
    assert len(prog) == 16
    second = uapi.unpack("struct sock_filter", prog[8:])
    assert (second.code, second.jt, second.jf, second.k) == (0x15, 1, 2, 3)
    assert uapi.pack_array("struct sock_filter", []) == b""


def test_pack_errors():
    with pytest.raises(KeyError):
        uapi.pack("struct ifreq", no_such_field=1)
    with pytest.raises(OverflowError):
        uapi.pack("struct sock_filter", jt=256)
    with pytest.raises(KeyError):
        uapi.pack_array("struct sock_filter", [{"nope": 1}])
    with pytest.raises(ValueError):
        uapi.unpack("struct seccomp_data", b"\0" * 63)
    with pytest.raises(ValueError):  # cffi: unknown type
        uapi.sizeof("struct no_such_struct")


# --- with a port ---------------------------------------------------------------


@pytest.fixture
def port():
    p = niche.Port()
    try:
        yield p
    finally:
        p.close()


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                    reason="needs root and /dev/net/tun")
def test_tunsetiff_in_a_new_network_namespace(port):
    c = port.clone([], ["clone_newnet"], timeout=T)
    fd = port.open([c], "/dev/net/tun", "O_RDWR", timeout=T)
    flags = port.ioctl_constant([c], "IFF_TAP") | port.ioctl_constant([c], "IFF_NO_PI")
    req = uapi.pack("struct ifreq", ifr_name="niche%d", ifr_flags=flags)
    res, out = port.ioctl([c], fd, "TUNSETIFF", req, timeout=T)
    assert res == 0
    ifr = uapi.unpack("struct ifreq", out)
    name = uapi.ffi.string(ifr.ifr_name).decode()
    assert name.startswith("niche") and name != "niche%d"  # the kernel picked a name
    # The device lives in the new namespace only.
    fd2 = port.open([c], "/proc/self/net/dev", "O_RDONLY", timeout=T)
    netdev = port.read([c], fd2, 65536, timeout=T).decode()
    assert f" {name}:" in netdev or f"\n{name}:" in netdev
    with open("/proc/self/net/dev") as f:
        assert f"{name}:" not in f.read()


def test_signalfd_siginfo_of_a_signal_event(port):
    c = port.fork([], timeout=T)
    port.sigaction([c], "sigusr2", "sig_info", timeout=T)
    port.kill([], c, "sigusr2", timeout=T)
    ev = port.event([c], timeout=T)
    assert ev is not None and ev[:2] == ("signal", "sigusr2")
    info = uapi.unpack("struct signalfd_siginfo", ev[2])
    assert info.ssi_signo == port.signal_constant([], "SIGUSR2")
    assert info.ssi_pid == port.pid
    assert info.ssi_uid == os.getuid()
