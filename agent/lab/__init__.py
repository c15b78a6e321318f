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

from agent.lab.control import DEFAULT_USER, PASSWORD_ENV, Lab, LabError, LabHost, start_lab
from agent.lab.profiles import (
    Faults,
    HostProfile,
    LabDefinition,
    builtin_profiles_dir,
    load_lab,
    load_profile,
)

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
