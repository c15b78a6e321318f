"""The inventory: which hosts to scan, how to reach them, and what the deployment declares.

Ansible inventory sources (YAML, INI, Ansible's JSON inventory, directories of them, with
group_vars/ and host_vars/) read with Ansible's semantics and validated strictly; see
`inventory/example.yaml` for every supported key.

Modules: `sources` (-i files and directories, format by content), `yamlload` (line-aware safe
YAML), `ini` (INI format), `jsonlist` (``ansible-inventory --list`` JSON), `ranges` (host
patterns), `parse` (groups and hosts into one tree), `graph` (group hierarchy), `varsfiles`
(group_vars/host_vars), `vault` (Ansible Vault), `templates` (`Secret`, env lookups), `resolve`
(templates and vault values where they win), `settings` (schemas of the variables the agent
reads), `model` (the result dataclasses), `patterns` (``--limit``), `loader` (precedence and
assembly).
"""

from __future__ import annotations

from agent.inventory.loader import PRECEDENCE, load_inventory
from agent.inventory.model import (
    Connection,
    DirectorySettings,
    Host,
    Inventory,
    Location,
    SecretRef,
)
from agent.inventory.templates import Secret

__all__ = [
    "PRECEDENCE",
    "Connection",
    "DirectorySettings",
    "Host",
    "Inventory",
    "Location",
    "Secret",
    "SecretRef",
    "load_inventory",
]
