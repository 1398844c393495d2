"""Kernel uAPI structures, defined once with cffi (ABI mode, no compiler).

Every kernel structure niche builds or parses on the Python side is in the
single ``cdef`` below: its layout and field offsets come from cffi, never
from hand-written ``struct.pack`` formats or offsets. To add structures
(more GPIO ones, say), append their declarations to ``CDEF`` and use
:func:`pack` / :func:`unpack` with the new type name.

Rules for what goes in here:

- Layouts are computed by cffi for the machine running Python. niche sends
  these bytes to a port that may run on another architecture (x86_64,
  armhf, arm64; all little-endian), so only structures whose layout is the
  same on all of them belong here. Fixed-size integer fields (``uint32_t``,
  ``uint64_t``, arrays of them) are; anything holding a pointer or a
  ``long`` is not (its size differs between 32- and 64-bit ARM).
  ``struct sock_fprog`` is such a structure: it is declared for
  completeness, but niche never sends it. ``port.seccomp(chain, op, flags,
  prog_bytes)`` takes the *bytes* of the ``sock_filter`` instructions and
  the port builds the ``sock_fprog`` itself, in its own memory and with its
  own pointer size.
- No constant values here: flag and request numbers come from the port
  (``port.seccomp_constant(chain, "SECCOMP_RET_KILL_PROCESS")``,
  ``port.ioctl_constant(chain, "TUNSETIFF")``, ...), because the port knows
  the values of the platform it was built for.
"""

from __future__ import annotations

from typing import Any

from cffi import FFI

__all__ = ["CDEF", "ffi", "offsetof", "pack", "pack_array", "sizeof", "to_dict", "unpack"]

CDEF = """
/* <linux/filter.h>: one classic BPF instruction (8 bytes everywhere). */
struct sock_filter {
    uint16_t code;
    uint8_t  jt;
    uint8_t  jf;
    uint32_t k;
};

/* <linux/filter.h>: a BPF program. Pointer-bearing: its size is 8 bytes
 * on 32-bit ARM and 16 on 64-bit targets. Never sent to a port (the port
 * wraps raw sock_filter bytes itself); declared for local use only. */
struct sock_fprog {
    unsigned short len;
    struct sock_filter *filter;
};

/* <linux/seccomp.h>: what a seccomp filter sees (64 bytes everywhere). */
struct seccomp_data {
    int      nr;
    uint32_t arch;
    uint64_t instruction_pointer;
    uint64_t args[6];
};

/* <linux/signalfd.h>: the info of a ("signal", name, info) event (the
 * port traps signals through a signalfd); 128 bytes everywhere. For a
 * seccomp SIGSYS, ssi_syscall and ssi_arch say which call it was. */
struct signalfd_siginfo {
    uint32_t ssi_signo;
    int32_t  ssi_errno;
    int32_t  ssi_code;
    uint32_t ssi_pid;
    uint32_t ssi_uid;
    int32_t  ssi_fd;
    uint32_t ssi_tid;
    uint32_t ssi_band;
    uint32_t ssi_overrun;
    uint32_t ssi_trapno;
    int32_t  ssi_status;
    int32_t  ssi_int;
    uint64_t ssi_ptr;
    uint64_t ssi_utime;
    uint64_t ssi_stime;
    uint64_t ssi_addr;
    uint16_t ssi_addr_lsb;
    uint16_t __pad2;
    int32_t  ssi_syscall;
    uint64_t ssi_call_addr;
    uint32_t ssi_arch;
    uint8_t  __pad[28];
};

/* <linux/if.h>: struct ifreq, enough for TUNSETIFF and friends. The real
 * union also holds a sockaddr and struct ifmap (with longs): 40 bytes on
 * 64-bit targets, 32 on 32-bit ARM. 40 bytes is the larger of the two; the
 * kernel copies only its own sizeof(struct ifreq), so the padding is
 * harmless on a 32-bit port. */
/* <linux/gpio.h>, the GPIO character device, uAPI v2. Only fixed-size
 * fields: the same layout on x86_64, armhf and arm64 (PLATFORM.md). */
struct gpiochip_info {
    char name[32];
    char label[32];
    uint32_t lines;
};                                                  /* 68 bytes */

struct gpio_v2_line_values {
    uint64_t bits;
    uint64_t mask;
};                                                  /* 16 bytes */

struct gpio_v2_line_attribute {
    uint32_t id;
    uint32_t padding;
    union {
        uint64_t flags;
        uint64_t values;
        uint32_t debounce_period_us;
    };
};                                                  /* 16 bytes */

struct gpio_v2_line_config_attribute {
    struct gpio_v2_line_attribute attr;
    uint64_t mask;
};                                                  /* 24 bytes */

struct gpio_v2_line_config {
    uint64_t flags;
    uint32_t num_attrs;
    uint32_t padding[5];
    struct gpio_v2_line_config_attribute attrs[10];
};                                                  /* 272 bytes */

struct gpio_v2_line_request {
    uint32_t offsets[64];
    char consumer[32];
    struct gpio_v2_line_config config;
    uint32_t num_lines;
    uint32_t event_buffer_size;
    uint32_t padding[5];
    int32_t fd;
};                                                  /* 592 bytes */

struct gpio_v2_line_info {
    char name[32];
    char consumer[32];
    uint32_t offset;
    uint32_t num_attrs;
    uint64_t flags;
    struct gpio_v2_line_attribute attrs[10];
    uint32_t padding[4];
};                                                  /* 256 bytes */

struct gpio_v2_line_event {
    uint64_t timestamp_ns;
    uint32_t id;
    uint32_t offset;
    uint32_t seqno;
    uint32_t line_seqno;
    uint32_t padding[6];
};                                                  /* 48 bytes */

struct ifreq {
    char ifr_name[16];
    union {
        short ifr_flags;
        int   ifr_ifindex;
        int   ifr_mtu;
        char  ifr_newname[16];
        char  ifr_slave[16];
        char  _ifr_pad[24];
    };
};
"""

ffi = FFI()
ffi.cdef(CDEF)


def _ctype(ctype: str) -> str:
    return ctype.strip()


def sizeof(ctype: str) -> int:
    """The size in bytes of a type of the cdef, e.g. ``sizeof("struct ifreq")``."""
    return ffi.sizeof(_ctype(ctype))


def offsetof(ctype: str, *fields: str | int) -> int:
    """The offset of a field, e.g. ``offsetof("struct seccomp_data", "arch")``."""
    return ffi.offsetof(_ctype(ctype), *fields)


def _init(value: Any) -> Any:
    # cffi takes bytes for char arrays; accept str (UTF-8) too, and
    # dicts/lists of them for nested structures and arrays.
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return {k: _init(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_init(v) for v in value]
    return value


def pack(ctype: str, **fields: Any) -> bytes:
    """The bytes of a ``ctype`` with the given fields set (the rest zero).

    ``pack("struct ifreq", ifr_name="tap0", ifr_flags=flags)``. Char arrays
    take ``str`` or ``bytes``; nested structures take dicts, arrays lists.
    Unknown fields and out-of-range values raise as cffi does
    (``KeyError``/``OverflowError``/``TypeError``).
    """
    ctype = _ctype(ctype)
    obj = ffi.new(f"{ctype} *")
    for name, value in fields.items():
        try:
            setattr(obj, name, _init(value))
        except AttributeError:
            raise KeyError(f"{ctype} has no field {name!r}") from None
    return bytes(ffi.buffer(obj))


def pack_array(ctype: str, items: list[dict[str, Any]]) -> bytes:
    """The bytes of an array of ``ctype``, one dict of fields per element."""
    ctype = _ctype(ctype)
    arr = ffi.new(f"{ctype}[]", len(items))
    for i, fields in enumerate(items):
        for name, value in fields.items():
            try:
                setattr(arr[i], name, _init(value))
            except AttributeError:
                raise KeyError(f"{ctype} has no field {name!r}") from None
    return bytes(ffi.buffer(arr))


def unpack(ctype: str, data: bytes | bytearray | memoryview) -> Any:
    """A ``ctype`` (cffi cdata, with attribute access) copied from data.

    ``data`` may be longer than the structure (the rest is ignored); a
    shorter buffer raises ``ValueError``. The result owns its memory.
    """
    ctype = _ctype(ctype)
    size = ffi.sizeof(ctype)
    view = memoryview(data).cast("B")
    if len(view) < size:
        raise ValueError(f"{ctype} needs {size} bytes, got {len(view)}")
    obj = ffi.new(f"{ctype} *")
    ffi.memmove(obj, view[:size].tobytes(), size)
    return obj  # a pointer: fields read as obj.name, and it owns the memory


def to_dict(cdata: Any) -> dict[str, Any]:
    """A structure as a dict: char arrays as bytes (up to the first NUL),
    other arrays as lists, nested structures as dicts."""
    t = ffi.typeof(cdata)
    if t.kind == "pointer":
        t = t.item
    out: dict[str, Any] = {}
    for name, field in t.fields:
        if not name or name.startswith("_"):
            continue
        out[name] = _value(getattr(cdata, name), field.type)
    return out


def _value(v: Any, t: Any) -> Any:
    if t.kind == "array":
        if t.item.cname == "char":
            return ffi.string(v)
        return [_value(x, t.item) for x in v]
    if t.kind == "struct" or t.kind == "union":
        return to_dict(v)
    return v
