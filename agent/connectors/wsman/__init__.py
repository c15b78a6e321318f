"""The fast WS-Management client: many Windows hosts at once, five HTTP requests per host.

pywinrm is synchronous: one thread per host, eleven HTTP requests per host for the agent's fact
scripts, and most of its client CPU in requests/urllib3 and per-request environment lookups.
This package reads the hosts pywinrm's design cannot make fast — NTLM (with message encryption
over http) and Basic, over http or https with certificate validation — on asyncio:

* `session`: one host, one TCP connection, five requests (the request plan is in its docstring),
  errors as pywinrm's path reports them;
* `ntlm`: NTLM sign-in, the messages pyspnego (what pywinrm uses) builds, byte for byte; a
  CHALLENGE it does not answer is signed in again with pyspnego;
* `ntlmseal`: message sealing with the negotiated keys;
* `soap`: the four messages from string templates, replies parsed strictly;
* `http`: a strict minimal HTTP/1.1 client that caps every reply while reading it;
* `fleet`: many hosts concurrently, one process per core for large fleets.

Every other transport (Kerberos, CredSSP, certificate, ``cert_validation: ignore``) keeps using
`agent.connectors.winrm`; `agent.gather` decides per host with `covers`.
"""

from __future__ import annotations

from agent.connectors.wsman.fleet import FleetRun
from agent.connectors.wsman.session import covers, gather_facts

__all__ = ["FleetRun", "covers", "gather_facts"]
