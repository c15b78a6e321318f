"""Connectors: the narrow boundary between the agent and remote hosts.

Each connector gathers facts from one host and translates every library exception into a
`ConnectorError` with a kind from `ErrorKind`, so nothing above this package sees pywinrm,
requests, paramiko or ldap3 exceptions.
"""

from __future__ import annotations

from agent.connectors.errors import ConnectorError, ErrorKind

__all__ = ["ConnectorError", "ErrorKind"]
