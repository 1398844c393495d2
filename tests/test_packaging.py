"""Packaging (issue 7): `make wheel` gives one wheel per platform with the
right static niche-port inside, tags pip accepts on each board, an installed
wheel whose niche.Port() finds its own binary; the port builds are
reproducible and small."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
MAX_SIZE = 150 * 1024

# build triple -> (wheel platform tags, ELF class, e_machine)
WHEELS = {
    "x86_64-linux-musl": ("manylinux_2_17_x86_64.manylinux2014_x86_64.musllinux_1_1_x86_64", 64, 62),
    "aarch64-linux-musl": ("manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64", 64, 183),
    "armv7-linux-musleabihf": ("manylinux_2_17_armv7l.manylinux2014_armv7l.musllinux_1_1_armv7l", 32, 40),
    "armv6-linux-musleabihf": ("linux_armv6l", 32, 40),
}
HOST_TRIPLE = {"x86_64": "x86_64-linux-musl", "aarch64": "aarch64-linux-musl",
               "armv7l": "armv7-linux-musleabihf", "armv6l": "armv6-linux-musleabihf"}

EF_ARM_EABI_VER5 = 0x05000000
EF_ARM_ABI_FLOAT_HARD = 0x400
SHT_ARM_ATTRIBUTES = 0x70000003
PT_INTERP = 3


def _make(*args: str) -> str:
    proc = subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"make {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheels() -> dict[str, Path]:
    out = _make("wheel")
    found = {}
    for triple, (tags, _, _) in WHEELS.items():
        path = BUILD / "wheels" / f"niche-0.1.0-py3-none-{tags}.whl"
        assert path.is_file(), f"{path.name} not built; make wheel said:\n{out}"
        found[triple] = path
    return found


# --- ELF -------------------------------------------------------------------

class Elf:
    def __init__(self, data: bytes) -> None:
        assert data[:4] == b"\x7fELF", "not an ELF file"
        assert data[5] == 1, "not little-endian"
        self.data = data
        self.bits = {1: 32, 2: 64}[data[4]]
        self.type, self.machine = struct.unpack_from("<HH", data, 16)
        if self.bits == 64:
            self.phoff, self.shoff, self.flags = struct.unpack_from("<QQI", data, 32)
            self.phentsize, self.phnum, self.shentsize, self.shnum = struct.unpack_from("<HHHH", data, 54)
        else:
            self.phoff, self.shoff, self.flags = struct.unpack_from("<III", data, 28)
            self.phentsize, self.phnum, self.shentsize, self.shnum = struct.unpack_from("<HHHH", data, 42)

    def segment_types(self) -> list[int]:
        return [struct.unpack_from("<I", self.data, self.phoff + i * self.phentsize)[0]
                for i in range(self.phnum)]

    def section(self, sh_type: int) -> bytes | None:
        for i in range(self.shnum):
            off = self.shoff + i * self.shentsize
            if self.bits == 64:
                _, typ, _, _, offset, size = struct.unpack_from("<IIQQQQ", self.data, off)
            else:
                _, typ, _, _, offset, size = struct.unpack_from("<IIIIII", self.data, off)
            if typ == sh_type:
                return self.data[offset:offset + size]
        return None


def _uleb(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def arm_attributes(sec: bytes) -> dict[int, int | str]:
    """The file-scope tags of an .ARM.attributes section ("aeabi" vendor)."""
    assert sec[:1] == b"A"
    i, attrs = 1, {}
    while i < len(sec):
        length = struct.unpack_from("<I", sec, i)[0]
        end = i + length
        vendor_end = sec.index(b"\0", i + 4)
        vendor = sec[i + 4:vendor_end]
        j = vendor_end + 1
        while vendor == b"aeabi" and j < end:
            tag, k = _uleb(sec, j)
            size = struct.unpack_from("<I", sec, k)[0]
            sub_end = j + size
            k += 4
            while tag == 1 and k < sub_end:  # Tag_File
                attr, k = _uleb(sec, k)
                if attr in (4, 5, 67) or (attr > 32 and attr % 2):  # NTBS-valued tags
                    z = sec.index(b"\0", k)
                    attrs[attr], k = sec[k:z].decode(), z + 1
                elif attr == 32:  # Tag_compatibility: ULEB then NTBS
                    attrs[attr], k = _uleb(sec, k)
                    k = sec.index(b"\0", k) + 1
                else:
                    attrs[attr], k = _uleb(sec, k)
            j = sub_end
        i = end
    return attrs


TAG_CPU_NAME, TAG_CPU_ARCH, TAG_FP_ARCH = 5, 6, 10
CPU_ARCH_V7 = 10


def check_binary(triple: str, data: bytes) -> None:
    _, bits, machine = WHEELS[triple]
    elf = Elf(data)
    assert (elf.bits, elf.machine) == (bits, machine), f"{triple}: ELF{elf.bits} machine {elf.machine}"
    assert PT_INTERP not in elf.segment_types(), f"{triple}: has PT_INTERP, not static"
    assert len(data) < MAX_SIZE, f"{triple}: {len(data)} bytes"
    if machine == 40:
        assert elf.flags & 0xFF000000 == EF_ARM_EABI_VER5, hex(elf.flags)
        assert elf.flags & EF_ARM_ABI_FLOAT_HARD, f"{triple}: not hard-float ({elf.flags:#x})"
        sec = elf.section(SHT_ARM_ATTRIBUTES)
        assert sec is not None, f"{triple}: no .ARM.attributes"
        attrs = arm_attributes(sec)
        if triple.startswith("armv6"):
            # Runs on the Pi Zero/1's ARM1176JZF-S: no ARMv7 code, VFPv2 at most.
            assert attrs[TAG_CPU_ARCH] < CPU_ARCH_V7, attrs
            assert attrs.get(TAG_FP_ARCH, 0) <= 2, attrs
            assert attrs.get(TAG_CPU_NAME) == "arm1176jzf-s", attrs
        else:
            assert attrs[TAG_CPU_ARCH] == CPU_ARCH_V7, attrs
            assert attrs.get(TAG_CPU_NAME) == "cortex-a8", attrs


# --- the wheels --------------------------------------------------------------

def test_one_wheel_per_platform(wheels):
    names = sorted(p.name for p in (BUILD / "wheels").glob("*.whl"))
    assert names == sorted(p.name for p in wheels.values())
    assert not list((BUILD / "wheels").glob("*-any.whl")), "a wheel without a port next to the platform ones"


@pytest.mark.parametrize("triple", WHEELS)
def test_wheel_carries_its_port(wheels, triple):
    with zipfile.ZipFile(wheels[triple]) as zf:
        bins = [n for n in zf.namelist() if n.startswith("niche/bin/")]
        assert bins == ["niche/bin/niche-port"]
        info = zf.getinfo("niche/bin/niche-port")
        data = zf.read(info)
    mode = info.external_attr >> 16
    assert info.create_system == 3 and mode == 0o100755, oct(mode)
    check_binary(triple, data)
    assert data == (BUILD / triple / "niche-port").read_bytes()


@pytest.mark.parametrize("triple", WHEELS)
def test_wheel_metadata_and_record(wheels, triple):
    tags = WHEELS[triple][0].split(".")
    with zipfile.ZipFile(wheels[triple]) as zf:
        names = zf.namelist()
        assert len(names) == len(set(names))
        (wheel_file,) = [n for n in names if n.endswith(".dist-info/WHEEL")]
        dist_info = wheel_file.rsplit("/", 1)[0]
        lines = zf.read(wheel_file).decode().splitlines()
        assert "Root-Is-Purelib: false" in lines
        assert [ln[5:] for ln in lines if ln.startswith("Tag: ")] == [f"py3-none-{t}" for t in tags]
        assert names[-1] == f"{dist_info}/RECORD"
        rows = list(csv.reader(io.StringIO(zf.read(f"{dist_info}/RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for name, digest, size in rows:
            if name.endswith("/RECORD"):
                assert (digest, size) == ("", "")
                continue
            data = zf.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={want}", len(data)), name
        assert "niche/__init__.py" in names and "niche/port.py" in names


# --- which wheel pip takes on which machine -----------------------------------

# name -> (sysconfig platform, 32-bit interpreter, glibc, musl, the wheel it must get)
TARGETS = {
    "debian12-x86_64": ("linux-x86_64", False, (2, 36), None, "x86_64-linux-musl"),
    "alpine-x86_64": ("linux-x86_64", False, None, (1, 2), "x86_64-linux-musl"),
    "pios64-aarch64": ("linux-aarch64", False, (2, 36), None, "aarch64-linux-musl"),
    "pios32-pi3-armv7l": ("linux-armv7l", True, (2, 36), None, "armv7-linux-musleabihf"),
    "pios32-bullseye-armv7l": ("linux-armv7l", True, (2, 31), None, "armv7-linux-musleabihf"),
    # 32-bit Pi OS on a Pi 4/5 boots a 64-bit kernel: uname says aarch64.
    "pios32-64bit-kernel": ("linux-aarch64", True, (2, 36), None, "armv7-linux-musleabihf"),
    "pios32-pizero-armv6l": ("linux-armv6l", True, (2, 36), None, "armv6-linux-musleabihf"),
}


def target_platforms(monkeypatch, name: str) -> list[str]:
    """The platform tags pip (packaging) computes on that machine: packaging's
    own algorithm, with only the facts of the machine put in."""
    tags = pytest.importorskip("packaging.tags")
    from packaging import _manylinux, _musllinux

    plat, is32, glibc, musl, _ = TARGETS[name]
    monkeypatch.setattr(tags.sysconfig, "get_platform", lambda: plat)
    monkeypatch.setattr(_manylinux, "_get_glibc_version",
                        lambda: _manylinux._GLibCVersion(*(glibc or (-1, -1))))
    monkeypatch.setattr(_manylinux, "_get_manylinux_module", lambda: None)
    monkeypatch.setattr(_manylinux, "_is_linux_armhf", lambda executable: True)  # Pi OS's python3 is armhf
    monkeypatch.setattr(_musllinux, "_get_musl_version",
                        lambda executable: _musllinux._MuslVersion(*musl) if musl else None)
    return list(tags._linux_platforms(is_32bit=is32))


def test_no_manylinux_on_armv6l(monkeypatch):
    # Why the armv6 wheel is linux_armv6l: pip offers nothing else there.
    assert target_platforms(monkeypatch, "pios32-pizero-armv6l") == ["linux_armv6l"]


@pytest.mark.parametrize("target", TARGETS)
def test_tags_accepted_by_target(monkeypatch, target):
    utils = pytest.importorskip("packaging.utils")
    supported = set(target_platforms(monkeypatch, target))
    accepted = set()
    for triple, (tags, _, _) in WHEELS.items():
        _, _, _, wheel_tags = utils.parse_wheel_filename(f"niche-0.1.0-py3-none-{tags}.whl")
        if {t.platform for t in wheel_tags} & supported:
            accepted.add(triple)
    assert accepted == {TARGETS[target][4]}, sorted(supported)[:8]


@pytest.mark.parametrize("target", ["debian12-x86_64", "pios64-aarch64", "pios32-pi3-armv7l",
                                    "pios32-64bit-kernel", "pios32-pizero-armv6l"])
def test_pip_picks_the_right_wheel(wheels, monkeypatch, tmp_path, target):
    plats = target_platforms(monkeypatch, target)
    monkeypatch.undo()
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
           "--report", str(report), "--no-deps", "--no-index", "--find-links", str(BUILD / "wheels"),
           "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
           "--target", str(tmp_path / "t"), *[a for p in plats for a in ("--platform", p)], "niche"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (item,) = json.loads(report.read_text())["install"]
    assert item["download_info"]["url"].rsplit("/", 1)[1] == wheels[TARGETS[target][4]].name


def test_installed_wheel_finds_its_port(wheels, tmp_path):
    triple = HOST_TRIPLE.get(platform.machine())
    if triple is None:
        pytest.skip(f"no wheel for this host ({platform.machine()})")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet",
                    "--disable-pip-version-check", "--no-deps", "--no-index", str(wheels[triple])],
                   check=True)
    script = (
        "import os, niche, niche.port\n"
        "print(niche.port.find_port())\n"
        "with niche.Port() as p:\n"
        "    assert p.getpid([]) > 0\n"
        "    c = p.fork([])\n"
        "    assert p.getpid([c]) == c\n"
        "import tomllib\n"
        "from importlib.resources import files\n"
        "for b in ('beaglebone', 'rpi', 'sim'):  # the board tables ship with the wheel\n"
        "    t = tomllib.loads(files('niche').joinpath(f'boards/{b}/board.toml').read_text())\n"
        "    assert t['pins'], b\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NICHE_PORT", "PYTHONPATH")}
    proc = subprocess.run([str(py), "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found, ok = proc.stdout.split()
    site = Path(found).parent.parent
    assert Path(found) == site / "bin" / "niche-port" and str(site).startswith(str(venv)), found
    assert os.stat(found).st_mode & 0o777 == 0o755
    assert ok == "ok"


def test_wheels_reproducible(wheels, tmp_path):
    """Two `make wheel` runs give the same bytes (back to back: the tree is shared)."""
    for d in ("a", "b"):
        _make("wheel", f"WHEEL_DIR={tmp_path / d}", f"WHEEL_PURE={tmp_path / ('pure-' + d)}")
    for path in wheels.values():
        a, b = (tmp_path / d / path.name for d in "ab")
        if a.read_bytes() != b.read_bytes():
            with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
                ia = {i.filename: (i.date_time, i.CRC, i.external_attr) for i in za.infolist()}
                ib = {i.filename: (i.date_time, i.CRC, i.external_attr) for i in zb.infolist()}
            diff = sorted(n for n in ia.keys() | ib.keys() if ia.get(n) != ib.get(n))
            pytest.fail(f"{path.name} differs between two builds: {diff or 'zip layout'}")


# --- the port builds -----------------------------------------------------------

CROSS = ["native", *WHEELS]


@pytest.fixture(scope="module")
def cross_built(wheels) -> str:
    return _make("cross")


def test_cross_reports_sizes(cross_built):
    for triple in ("native", "armv6-linux-musleabihf", "armv7-linux-musleabihf", "aarch64-linux-musl"):
        line = next(ln for ln in cross_built.splitlines() if f"build/{triple}/niche-port" in ln)
        size = int(line.split()[-2])
        assert size == (BUILD / triple / "niche-port").stat().st_size
        assert size < MAX_SIZE, line


@pytest.mark.parametrize("triple", CROSS)
def test_cross_build_reproducible(cross_built, tmp_path, triple):
    """Compiling the same sources again, with a fresh local zig cache and to
    another place, gives the same bytes."""
    _make(f"repro-{triple}", f"REPRO_DIR={tmp_path}")
    again = (tmp_path / triple / "niche-port").read_bytes()
    assert again == (BUILD / triple / "niche-port").read_bytes()
    if triple != "native":
        check_binary(triple, again)
    shutil.rmtree(tmp_path / "zig-local", ignore_errors=True)
