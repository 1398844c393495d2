"""niche: GPIO over MQTT, every line held by its own sandboxed process.

``niche.Port`` is the alcove API in Python: a tree of processes, each
making system calls on request. See README.md and docs/.
"""

from .filter import allow
from .highlevel import CommandFailed
from .port import (
    BadPid,
    Chain,
    ChildProc,
    Constant,
    CStruct,
    Event,
    Port,
    PortClosed,
    PortError,
    Process,
    ProcessExited,
    ProtocolError,
    Rlimit,
    Undefined,
    find_port,
)

__version__ = "0.1.0"

__all__ = [
    "BadPid", "Chain", "ChildProc", "CommandFailed", "Constant", "Event", "Port", "PortClosed", "PortError",
    "Process", "ProcessExited", "ProtocolError", "Rlimit", "Undefined", "allow", "find_port", "CStruct",
]
