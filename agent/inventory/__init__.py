"""The inventory: which hosts to scan, how to reach them, and what the deployment declares.

An Ansible YAML inventory (with group_vars/ and host_vars/ beside it) read with Ansible's
semantics and validated strictly; see `inventory/example.yaml` for every supported key.

Modules: `yamlload` (line-aware safe YAML), `ranges` (host patterns), `templates` (env lookups,
`Secret`), `parse` (the file's groups and hosts), `graph` (group hierarchy), `varsfiles`
(group_vars/host_vars), `settings` (schemas of the variables the agent reads), `model` (the
result dataclasses), `patterns` (``--limit``), `loader` (precedence and assembly).
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
