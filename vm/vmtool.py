#!/usr/bin/env python3
"""Helpers for the VM lane (stdlib only), called by vm/vm.mk and vm/*.sh.

  vmtool.py aptconf DIR          private APT_CONFIG (foreign arches, no dpkg change)
  vmtool.py resolve              newest kernel version with all 4 flavours -> shell vars
  vmtool.py modorder ROOT KVER MOD...   module files in load order (deps first)
  vmtool.py initramfs OUT SPEC...       write a newc cpio: SPEC is DEST=SRC or DEST/ (dir)
"""
import os
import re
import subprocess
import sys

# Debian kernel flavour of each guest: (apt arch, image package suffix).
FLAVOURS = {
    "x86_64": ("amd64", "amd64"),
    "arm64": ("arm64", "arm64"),
    "armhf": ("armhf", "armmp"),
    "raspi0": ("armel", "rpi"),
}
SECURITY_ARCHES = "amd64 arm64"  # armhf index of -security is broken on this mirror


def aptconf(d):
    """Write DIR/apt.conf and DIR/sources.list from the system's Debian sources."""
    d = os.path.abspath(d)
    for sub in ("lists/partial", "cache/archives/partial", "state"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    stanzas = []
    srcdir = "/etc/apt/sources.list.d"
    files = [os.path.join(srcdir, f) for f in sorted(os.listdir(srcdir)) if f.endswith(".sources")]
    for f in files:
        for block in re.split(r"\n\s*\n", open(f).read()):
            fields = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            if "debian" not in fields.get("signed-by", "") + fields.get("uris", ""):
                continue
            if ("deb" not in fields.get("types", "").split()
                    or "main" not in fields.get("components", "")):
                continue
            stanzas.append(fields)
    # one-line sources.list, too (older systems)
    if os.path.exists("/etc/apt/sources.list"):
        for line in open("/etc/apt/sources.list"):
            m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
            if m and "main" in m.group(4).split():
                stanzas.append({"uris": m.group(2), "suites": m.group(3), "components": "main",
                                "signed-by": ""})
    if not stanzas:
        sys.exit("vmtool aptconf: no Debian 'deb ... main' source found in /etc/apt")
    out = []
    for s in stanzas:
        for suite in s["suites"].split():
            arches = SECURITY_ARCHES if "security" in suite else "amd64 arm64 armhf armel"
            opts = f"arch={arches.replace(' ', ',')}"
            if s.get("signed-by"):
                opts += f" signed-by={s['signed-by']}"
            for uri in s["uris"].split():
                out.append(f"deb [{opts}] {uri} {suite} main\n")
    with open(os.path.join(d, "sources.list"), "w") as f:
        f.writelines(sorted(set(out)))
    with open(os.path.join(d, "apt.conf"), "w") as f:
        f.write(f"""Dir::Etc::SourceList "{d}/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State "{d}/state";
Dir::State::Lists "{d}/lists";
Dir::State::status "/var/lib/dpkg/status";
Dir::Cache "{d}/cache";
APT::Architecture "amd64";
APT::Architectures {{ "amd64"; "arm64"; "armhf"; "armel"; }};
Acquire::Languages "none";
Debug::NoLocking "true";
APT::Sandbox::User "root";
""")


def _madison(*pkgs):
    """{package (without :arch): {versions}} in one apt-cache call."""
    r = subprocess.run(["apt-cache", "madison", *pkgs], capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        if line.count("|") >= 2:
            name, ver = (x.strip() for x in line.split("|")[:2])
            out.setdefault(name.split(":")[0], set()).add(ver)
    return out


def _vercmp_key(versions):
    # sort with dpkg semantics, newest first
    import functools

    def cmp(a, b):
        if a == b:
            return 0
        r = subprocess.run(["dpkg", "--compare-versions", a, "gt", b])
        return 1 if r.returncode == 0 else -1
    return sorted(versions, key=functools.cmp_to_key(cmp), reverse=True)


def resolve():
    """Print KVERSION=... KABI=... : the newest version of the Debian kernel
    meta-packages available for every guest flavour (x86_64, arm64, armhf, rpi),
    and its ABI (from the meta-package's dependency)."""
    metas = {f"linux-image-{flav}": arch for arch, flav in FLAVOURS.values()}
    found = _madison(*(f"{m}:{a}" for m, a in metas.items()), "linux-source-6.1")
    common = None
    for m, a in metas.items():
        v = found.get(m)
        if not v:
            sys.exit(f"vmtool resolve: apt knows no {m}:{a} (apt-get update?)")
        common = v if common is None else common & v
    common = (common or set()) & found.get("linux-source-6.1", set())
    if not common:
        sys.exit("vmtool resolve: no kernel version is available for all guest flavours "
                 "and as linux-source-6.1")
    ver = _vercmp_key(common)[0]
    r = subprocess.run(["apt-cache", "depends", f"linux-image-arm64:arm64={ver}"],
                       capture_output=True, text=True, check=True)
    m = re.search(r"Depends: linux-image-(\d+\.\d+\.\d+-\d+)-arm64", r.stdout)
    if not m:
        sys.exit(f"vmtool resolve: cannot find the ABI in:\n{r.stdout}")
    print(f"KVERSION={ver}")
    print(f"KABI={m.group(1)}")


def _modinfo(path):
    data = open(path, "rb").read()
    out = {}
    # .modinfo strings are NUL-separated key=value; good enough without ELF parsing
    for key in (b"depends=", b"name="):
        i = data.find(b"\0" + key)
        if i >= 0:
            j = data.index(b"\0", i + 1)
            out[key[:-1].decode()] = data[i + 1 + len(key):j].decode()
    return out


def modorder(root, kver, mods):
    base = os.path.join(root, "lib/modules", kver)
    index = {}
    for dp, _, fns in os.walk(base):
        for fn in fns:
            if fn.endswith(".ko"):
                index[fn[:-3].replace("-", "_")] = os.path.join(dp, fn)
    builtin = set()
    bf = os.path.join(base, "modules.builtin")
    if os.path.exists(bf):
        builtin = {os.path.basename(x.strip())[:-3].replace("-", "_") for x in open(bf)}
    order, seen = [], set()

    def visit(name, chain):
        n = name.replace("-", "_")
        if n in seen:
            return
        seen.add(n)
        if n not in index:
            if n in builtin:
                return
            sys.exit(f"vmtool modorder: module {name} not found in {base} (needed by {chain})")
        deps = _modinfo(index[n]).get("depends", "")
        for d in filter(None, deps.split(",")):
            visit(d, chain + [name])
        order.append(index[n])

    for m in mods:
        if "=" in m:  # extra module dir: name=path
            name, path = m.split("=", 1)
            index[name.replace("-", "_")] = path
            continue
        visit(m, [])
    for p in order:
        print(p)


def initramfs(out, specs):
    """newc cpio, deterministic (mtime 0, uid 0)."""
    entries = []
    ino = 1000

    def hdr(name, mode, size, nlink=1, rdev=(0, 0)):
        nonlocal ino
        ino += 1
        fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        h = b"070701" + b"".join(b"%08X" % f for f in fields)
        h += name.encode() + b"\0"
        h += b"\0" * ((4 - len(h) % 4) % 4)
        return h

    dirs = set()

    def add_dirs(path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in dirs:
                dirs.add(d)
                entries.append(hdr(d, 0o040755, 0, 2))

    for d in ("dev", "proc", "sys", "tmp", "run"):
        dirs.add(d)
        entries.append(hdr(d, 0o040755, 0, 2))
    entries.append(hdr("dev/console", 0o020600, 0, rdev=(5, 1)))
    for spec in specs:
        dest, src = spec.split("=", 1) if "=" in spec else (spec, None)
        dest = dest.strip("/")
        add_dirs(dest)
        if src is None:
            if dest not in dirs:
                dirs.add(dest)
                entries.append(hdr(dest, 0o040755, 0, 2))
            continue
        data = open(src, "rb").read()
        mode = 0o100755 if os.access(src, os.X_OK) else 0o100644
        h = hdr(dest, mode, len(data))
        entries.append(h + data + b"\0" * ((4 - len(data) % 4) % 4))
    entries.append(hdr("TRAILER!!!", 0, 0))
    blob = b"".join(entries)
    blob += b"\0" * ((512 - len(blob) % 512) % 512)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, out)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "aptconf":
        aptconf(args[0])
    elif cmd == "resolve":
        resolve()
    elif cmd == "modorder":
        modorder(args[0], args[1], args[2:])
    elif cmd == "initramfs":
        initramfs(args[0], args[1:])
    else:
        sys.exit(__doc__)
