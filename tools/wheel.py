#!/usr/bin/env python3
"""Build one niche wheel per platform, each with its static niche-port.

``python -m build`` makes the pure wheel (and the sdist) once; then, for each
platform, this script copies the wheel's entries, adds the right static
binary as ``niche/bin/niche-port`` (mode 0755), writes a WHEEL file with
``Root-Is-Purelib: false`` and the platform's tags, and a fresh RECORD.
Entries get a fixed timestamp (SOURCE_DATE_EPOCH, else 1980-01-01) and a
fixed order, so the same sources and binaries give the same wheel bytes.

Tags. The binary is fully static (musl, no PT_INTERP), so it needs nothing
from the C library of the board; the tags only have to be ones pip accepts
there, and ones PyPI accepts where that is possible:

- x86_64, aarch64, armv7l: ``manylinux_2_17_ARCH.manylinux2014_ARCH.
  musllinux_1_1_ARCH``. pip accepts manylinux_2_17 on any glibc >= 2.17
  (Debian 12, Raspberry Pi OS 11/12: glibc 2.31/2.36) and musllinux_1_1 on
  Alpine; PyPI accepts both. On armv7l pip offers manylinux tags only when
  the interpreter is hard-float EABI5, which Raspberry Pi OS's is; a 32-bit
  Pi OS on a 64-bit kernel reports ``aarch64`` and pip maps it to
  armv8l + armv7l, so it takes this wheel too.
- armv6l (Pi Zero/1): ``linux_armv6l``. pip offers no manylinux tag at all
  for armv6l (packaging only knows armv7l-hard-float for 32-bit ARM), so
  ``linux_armv6l`` is the one tag it accepts there. PyPI refuses ``linux_*``
  uploads: this wheel is installed from a file or a private index (piwheels
  uses the same tag).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN_ARCNAME = "niche/bin/niche-port"
ZIP_EPOCH = 315532800  # 1980-01-01, the earliest a zip can say

# build triple -> (ELF e_machine, wheel platform tags)
PLATFORMS: dict[str, tuple[int, list[str]]] = {
    "x86_64-linux-musl": (62, ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "musllinux_1_1_x86_64"]),
    "aarch64-linux-musl": (183, ["manylinux_2_17_aarch64", "manylinux2014_aarch64", "musllinux_1_1_aarch64"]),
    "armv7-linux-musleabihf": (40, ["manylinux_2_17_armv7l", "manylinux2014_armv7l", "musllinux_1_1_armv7l"]),
    "armv6-linux-musleabihf": (40, ["linux_armv6l"]),
}


def elf_machine(data: bytes) -> int:
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    endian = "<" if data[5] == 1 else ">"
    return struct.unpack_from(endian + "H", data, 18)[0]


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def source_epoch() -> int:
    """SOURCE_DATE_EPOCH when set, else 1980-01-01: not the commit time, so a
    new commit that changes nothing packaged changes no wheel byte either."""
    return int(os.environ.get("SOURCE_DATE_EPOCH") or ZIP_EPOCH)


def build_pure(outdir: Path, epoch: int) -> Path:
    """sdist, then the pure wheel from the sdist (a clean tree, no stale files)."""
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob("niche-*"):
        old.unlink()
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(ROOT)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:  # its chatter (setuptools' warnings) only when it failed
        sys.stderr.write(proc.stdout)
        raise SystemExit(f"python -m build failed ({proc.returncode})")
    (wheel,) = outdir.glob("niche-*-py3-none-any.whl")
    return wheel


def _zinfo(name: str, date_time: tuple[int, ...], mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=date_time)  # type: ignore[arg-type]
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so external_attr carries the mode
    info.external_attr = (0o100000 | mode) << 16
    return info


def platform_wheel(pure: Path, binary: Path, tags: list[str], outdir: Path, epoch: int) -> Path:
    with zipfile.ZipFile(pure) as zin:
        entries = {n: zin.read(n) for n in zin.namelist()
                   if not n.endswith("/") and not n.startswith("niche/bin/")}
    (dist_info,) = {n.split("/", 1)[0] for n in entries if n.split("/", 1)[0].endswith(".dist-info")}
    name, version = dist_info[: -len(".dist-info")].split("-", 1)

    wheel_lines = [line for line in entries[f"{dist_info}/WHEEL"].decode().splitlines()
                   if line and not line.startswith(("Root-Is-Purelib:", "Tag:"))]
    wheel_lines.append("Root-Is-Purelib: false")
    wheel_lines += [f"Tag: py3-none-{t}" for t in tags]
    entries[f"{dist_info}/WHEEL"] = ("\n".join(wheel_lines) + "\n").encode()
    entries.pop(f"{dist_info}/RECORD", None)
    entries[BIN_ARCNAME] = binary.read_bytes()

    # Package files first, .dist-info last, RECORD at the very end.
    order = sorted(entries, key=lambda n: (n.startswith(dist_info), n))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for n in order:
        writer.writerow([n, record_hash(entries[n]), len(entries[n])])
    writer.writerow([f"{dist_info}/RECORD", "", ""])

    date_time = time.gmtime(max(epoch, ZIP_EPOCH))[:6]
    out = outdir / f"{name}-{version}-py3-none-{'.'.join(tags)}.whl"
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zout:
        for n in order:
            zout.writestr(_zinfo(n, date_time, 0o755 if n == BIN_ARCNAME else 0o644), entries[n])
        zout.writestr(_zinfo(f"{dist_info}/RECORD", date_time, 0o644), record.getvalue().encode())
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", type=Path, default=ROOT / "build",
                    help="the build folder (binaries per triple)")
    ap.add_argument("--out", type=Path, default=None, help="where the wheels go (default BUILD/wheels)")
    ap.add_argument("--pure", type=Path, default=None,
                    help="where the sdist and the binary-less wheel go (default BUILD/wheel-pure; kept "
                         "apart so `pip install --find-links BUILD/wheels` never takes a portless wheel)")
    args = ap.parse_args(argv)
    out = args.out or args.build / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    epoch = source_epoch()

    binaries = {}
    for triple, (machine, _tags) in PLATFORMS.items():
        path = args.build / triple / "niche-port"
        if not path.is_file():
            ap.error(f"{path} is missing: run `make cross` (or `make wheel`)")
        got = elf_machine(path.read_bytes())
        if got != machine:
            ap.error(f"{path}: ELF machine {got}, expected {machine}")
        binaries[triple] = path

    pure = build_pure(args.pure or args.build / "wheel-pure", epoch)
    for old in out.glob("niche-*.whl"):
        old.unlink()
    for triple, (_machine, tags) in PLATFORMS.items():
        whl = platform_wheel(pure, binaries[triple], tags, out, epoch)
        print(f"{whl} {whl.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
