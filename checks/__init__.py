"""The check catalogue: importing this package registers every check with `agent.registry`.

Modules are grouped by what they read:

- `checks.common`: every host with a role (MFA Server's retirement, clock skew);
- `checks.adfs`: AD FS farm nodes;
- `checks.portal`: User Portal web servers;
- `checks.deployment`: what the inventory declares or attests (``mfa_deployment``);
- `checks.directory`: the directory (PhoneFactor Admins, the AD FS service account).

The quoted guidance, sources and references live once in `checks._guidance`.
"""

from __future__ import annotations

from checks import adfs, common, deployment, directory, portal

__all__ = ["adfs", "common", "deployment", "directory", "portal"]
