"""The deployment roles: inventory group names that say what a host is."""

from __future__ import annotations

from typing import Final

ADFS: Final = "adfs"
MFA_SERVER: Final = "mfa_server"
USER_PORTAL: Final = "user_portal"
MOBILE_APP_WS: Final = "mobile_app_ws"
AAD_CONNECT: Final = "aad_connect"

#: Every role, in the order reports list them.
ROLES: Final[tuple[str, ...]] = (ADFS, MFA_SERVER, USER_PORTAL, MOBILE_APP_WS, AAD_CONNECT)

#: Marker for checks that apply to every host that has any role.
ANY_ROLE: Final = "*"

#: The role ``scan --sweep`` gives a Windows host without one: only the base facts are read and
#: only the checks of every host (ANY_ROLE, e.g. mfa-server-retired) apply.
SWEEP: Final = "sweep"

#: Result targets that are not hosts. Parentheses cannot occur in a host name.
DIRECTORY_TARGET: Final = "(directory)"
DEPLOYMENT_TARGET: Final = "(deployment)"
