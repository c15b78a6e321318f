"""The simulated Windows lab: WS-Management servers on loopback answering the agent's fact scripts.

There is no Windows to scan in development or CI, so the lab stands in for one: each host profile
(`agent.lab.profiles`, YAML) becomes a WS-Management endpoint (`agent.lab.wsman`) that the real
pywinrm client talks to over real HTTP(S) with real Basic or NTLM authentication and NTLM message
encryption. Commands are answered from the profile (`agent.lab.simulate`): it proves transport,
parsing and error handling, not that the PowerShell is right on Windows.

``start_lab`` starts a lab in process (`agent.lab.control`); ``python -m agent.lab.server`` runs
one until SIGTERM. The built-in lab (``agent/lab/profiles``) matches ``inventory/lab.yaml``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agent.lab.profiles import (
    Faults,
    HostProfile,
    LabDefinition,
    builtin_profiles_dir,
    load_lab,
    load_profile,
)

if TYPE_CHECKING:
    from agent.lab.control import DEFAULT_USER, PASSWORD_ENV, Lab, LabError, LabHost, start_lab

#: Names from `agent.lab.control`, imported on first use: the SSH tests' powershell stand-in runs
#: once per fact script and needs only the profiles and the simulator, not the WS-Management
#: server (its import costs seconds on a loaded machine).
_CONTROL = frozenset({"DEFAULT_USER", "PASSWORD_ENV", "Lab", "LabError", "LabHost", "start_lab"})


def __getattr__(name: str) -> Any:
    if name in _CONTROL:
        return getattr(importlib.import_module("agent.lab.control"), name)
    raise AttributeError(f"module 'agent.lab' has no attribute {name!r}")


__all__ = [
    "DEFAULT_USER",
    "PASSWORD_ENV",
    "Faults",
    "HostProfile",
    "Lab",
    "LabDefinition",
    "LabError",
    "LabHost",
    "builtin_profiles_dir",
    "load_lab",
    "load_profile",
    "start_lab",
]
