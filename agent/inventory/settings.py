"""Schemas of every variable the agent reads: Ansible connection variables and ``mfa_*``.

Each variable is validated where it is written (every definition, not only the winning one),
so a problem points at its own file and line. Validators record a `Problem` through `Ctx` and
raise `Rejected`; mapping validators carry on with the other keys first, so one run reports
everything. Messages never quote a password.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn, get_args
from urllib.parse import urlsplit

from agent.errors import Problem
from agent.facts import IPNetwork
from agent.inventory.model import (
    CertValidation,
    DirectoryAuth,
    DirectorySettings,
    Location,
    WinrmScheme,
    WinrmTransport,
)
from agent.inventory.sshargs import SshArgsError, parse_ssh_args
from agent.inventory.templates import ENV_LOOKUP_HINT, Secret, env_lookup_name, is_unevaluated
from agent.inventory.yamlload import kind_of, line_of
from agent.roles import ROLES

Validator = Callable[["Ctx", Any], Any]


class Rejected(Exception):
    """A value failed validation; its problems are already recorded."""


@dataclass
class Ctx:
    """Where a value is being validated: file, line, dotted key, and the problems so far."""

    file: str
    line: int | None
    key: str
    problems: list[Problem]

    def at(self, sub: str | int, container: Any) -> Ctx:
        """The context of key or index `sub` inside `container`."""
        key = f"{self.key}.{sub}" if isinstance(sub, str) else f"{self.key}[{sub}]"
        line = line_of(container, sub)
        return Ctx(self.file, self.line if line is None else line, key, self.problems)

    def report(self, message: str) -> None:
        """Record a problem at this context."""
        self.problems.append(Problem(self.file, message, self.line, self.key))

    def fail(self, message: str) -> NoReturn:
        """Record a problem and reject the value."""
        self.report(message)
        raise Rejected(message)


def _unevaluated(ctx: Ctx) -> NoReturn:
    ctx.fail("this template or tagged value cannot be used here; write the value itself")


def expect(ctx: Ctx, value: Any, what: str) -> NoReturn:
    """Reject `value` for not being `what`."""
    if is_unevaluated(value):
        _unevaluated(ctx)
    ctx.fail(f"must be {what}, not {kind_of(value)}")


def suggest(key: str, known: Any) -> str:
    """`` (did you mean 'x'?)`` for the nearest known key, or nothing."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# -- scalar validators ---------------------------------------------------------------------


def text(ctx: Ctx, value: Any) -> str:
    """A non-empty, non-template string."""
    if not isinstance(value, str) or is_unevaluated(value):
        expect(ctx, value, "a string")
    if not value.strip():
        ctx.fail("must not be empty")
    return value


def directory_name(ctx: Ctx, value: Any) -> str:
    """A group or account name, or a DN, for the directory: text without control characters.

    NUL and the other control characters (C0, DEL, C1) cannot be in an AD name; in an LDAP filter
    or a report they would only truncate or disguise what is compared.
    """
    name = text(ctx, value)
    bad = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        ctx.fail(f"must not contain control characters (found U+{ord(bad):04X})")
    return name


def any_text(ctx: Ctx, value: Any) -> str:
    """A non-template string, possibly empty."""
    if not isinstance(value, str) or is_unevaluated(value):
        expect(ctx, value, "a string")
    return value


def boolean(ctx: Ctx, value: Any) -> bool:
    """A YAML boolean (true/false)."""
    if not isinstance(value, bool):
        expect(ctx, value, "true or false")
    return value


def integer(low: int | None = None, high: int | None = None) -> Validator:
    """An integer within [low, high]; booleans are not integers."""

    def check(ctx: Ctx, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            expect(ctx, value, "an integer")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            ctx.fail(f"must be an integer {bounds}, not {value}")
        return value

    return check


def choice(*options: str) -> Validator:
    """One of `options`."""

    def check(ctx: Ctx, value: Any) -> str:
        if not isinstance(value, str) or is_unevaluated(value):
            expect(ctx, value, f"one of {', '.join(options)}")
        if value not in options:
            shown = value if len(value) <= 40 else value[:37] + "..."
            ctx.fail(f"must be one of {', '.join(options)}, not '{shown}'")
        return value

    return check


def secret(ctx: Ctx, value: Any) -> Secret:
    """A password: an env lookup, a vault value, or (discouraged) the value written inline."""
    if isinstance(value, Secret):
        return value
    name = env_lookup_name(value)
    if name is not None:
        return Secret.from_env(name)
    if is_unevaluated(value):
        ctx.fail(
            f"only {ENV_LOOKUP_HINT} is supported here "
            "(a literal password containing '{{' or '{%' can be tagged !unsafe)"
        )
    if not isinstance(value, str):
        ctx.fail(f"must be a string, not {kind_of(value)}")
    if not value:
        ctx.fail("must not be empty; leave the variable out instead")
    return Secret.inline(value)


_HOST_LABEL: Final = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def valid_address(value: str) -> bool:
    """Whether `value` is an IP address or a DNS host name (underscores tolerated)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return True
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    return all(_HOST_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def hostname(ctx: Ctx, value: Any) -> str:
    """A host name or IP address."""
    result = text(ctx, value)
    if not valid_address(result):
        ctx.fail(f"'{result[:60]}' is not a valid host name or IP address")
    return result


def network(ctx: Ctx, value: Any) -> IPNetwork:
    """A CIDR network such as ``10.0.0.0/8``; a bare address is a /32 (or /128)."""
    cidr = text(ctx, value).strip()
    try:
        return ipaddress.ip_network(cidr)
    except ValueError:
        pass
    try:
        fixed = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        ctx.fail(f"'{cidr[:60]}' is not a valid CIDR network (like 10.0.0.0/8 or 2001:db8::/32)")
    ctx.fail(f"'{cidr}' has host bits set; did you mean {fixed}?")


def list_of(item: Validator) -> Validator:
    """A list whose every item passes `item`."""

    def check(ctx: Ctx, value: Any) -> list[Any]:
        if not isinstance(value, list):
            expect(ctx, value, "a list")
        result: list[Any] = []
        bad = False
        for index, element in enumerate(value):
            try:
                result.append(item(ctx.at(index, value), element))
            except Rejected:
                bad = True
        if bad:
            raise Rejected(ctx.key)
        return result

    return check


def check_fields(
    ctx: Ctx, value: Any, fields: Mapping[str, Validator], required: tuple[str, ...] = ()
) -> tuple[dict[str, Any], bool]:
    """Validate a mapping with only `fields`: the valid entries, and whether all were valid."""
    if not isinstance(value, Mapping):
        expect(ctx, value, f"a mapping with keys {', '.join(fields)}")
    result: dict[str, Any] = {}
    valid = True
    for key, element in value.items():
        sub = ctx.at(str(key), value)
        if key not in fields:
            sub.report(
                f"unknown key '{key}'{suggest(str(key), fields)}; known keys: {', '.join(fields)}"
            )
            valid = False
            continue
        try:
            result[key] = fields[key](sub, element)
        except Rejected:
            valid = False
    for key in required:
        if key not in value:
            ctx.report(f"'{key}' is required")
            valid = False
    return result, valid


def mapping(fields: Mapping[str, Validator], required: tuple[str, ...] = ()) -> Validator:
    """A mapping with only `fields` (each validated), `required` ones present."""

    def check(ctx: Ctx, value: Any) -> dict[str, Any]:
        result, valid = check_fields(ctx, value, fields, required)
        if not valid:
            raise Rejected(ctx.key)
        return result

    return check


# -- agent settings ------------------------------------------------------------------------

_networks = list_of(network)


def cidr_strings(ctx: Ctx, value: Any) -> list[str]:
    """A list of CIDR networks, as their normalised strings."""
    return [str(n) for n in _networks(ctx, value)]


def networks(ctx: Ctx, value: Any) -> dict[str, tuple[IPNetwork, ...]]:
    """``mfa_networks``: ``{perimeter: [CIDR], internal: [CIDR]}``."""
    checked = mapping({"perimeter": _networks, "internal": _networks})(ctx, value)
    return {key: tuple(nets) for key, nets in checked.items()}


#: mfa_deployment: how the tenant is set up, as far as the agent cannot read it itself.
deployment = mapping(
    {
        "licensing": choice("licenses", "provider", "mixed"),
        "provider": choice("none", "per_user", "per_authentication"),
        "directory_sync": boolean,
        "app_passwords": mapping({"allowed": boolean, "justification": text}, ("allowed",)),
        "one_time_bypass_seconds": integer(0),
        "trusted_ips": mapping({"enabled": boolean, "ranges": cidr_strings}, ("enabled",)),
    }
)


def _without_credentials(url: str) -> str:
    """`url` as it may be shown: any ``user:password@`` part masked, and at most 80 characters."""
    return re.sub(r"//[^/]*@", "//***@", url)[:80]


def ldap_url(ctx: Ctx, value: Any) -> str:
    """``ldap://host[:port]`` or ``ldaps://host[:port]``."""
    url = text(ctx, value).strip()
    shown = _without_credentials(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        ctx.fail(f"'{shown}' is not a valid URL")
    if parts.scheme.lower() not in ("ldap", "ldaps"):
        ctx.fail(f"'{shown}' must start with ldap:// or ldaps://")
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        ctx.fail(f"'{shown}' must be only scheme, host and port (ldaps://dc01.corp.example:636)")
    if not parts.hostname or not valid_address(parts.hostname):
        ctx.fail(f"'{shown}' does not name a valid host")
    if port == 0:
        ctx.fail(f"'{shown}' has an invalid port")
    return url


_DIRECTORY_FIELDS: Final[Mapping[str, Validator]] = {
    "url": ldap_url,
    "urls": list_of(ldap_url),
    "base_dn": directory_name,
    "bind_dn": directory_name,
    "bind_password": secret,
    "ca_file": text,
    "server_name": hostname,
    "auth": choice(*get_args(DirectoryAuth)),
    "group": directory_name,
    "starttls": boolean,
    "allow_plain": boolean,
    "validate_certs": boolean,
    "timeout_seconds": integer(1, 3600),
}


def directory(ctx: Ctx, value: Any) -> DirectorySettings:
    """``mfa_directory``: the LDAP connection used to read the PhoneFactor Admins group."""
    fields, valid = check_fields(ctx, value, _DIRECTORY_FIELDS, ("base_dn",))
    before = len(ctx.problems)
    # Cross-checks run on the valid fields even when others were not, to report everything.
    urls = _directory_urls(ctx, value, fields)
    _check_directory(ctx, value, fields)
    if not valid or len(ctx.problems) > before:
        raise Rejected(ctx.key)
    fields.pop("url", None)
    fields["urls"] = tuple(urls)
    return DirectorySettings(**fields, location=Location(ctx.file, ctx.line))


def _directory_urls(ctx: Ctx, raw: Any, fields: dict[str, Any]) -> list[str]:
    """The URLs to use; problems for both or neither of url/urls (invalid ones are reported)."""
    if "url" in raw and "urls" in raw:
        ctx.at("urls", raw).report("give either 'url' or 'urls', not both")
        return []
    if "url" in fields:
        return [fields["url"]]
    urls: list[str] = fields.get("urls", [])
    if not urls and ("urls" in fields or ("url" not in raw and "urls" not in raw)):
        ctx.report("needs 'url' (or a non-empty 'urls' list) with an ldap:// or ldaps:// URL")
    return urls


def _url_contexts(ctx: Ctx, raw: Any, fields: dict[str, Any]) -> list[tuple[str, Ctx]]:
    if "url" in fields:
        return [(fields["url"], ctx.at("url", raw))]
    urls_ctx = ctx.at("urls", raw)
    raw_urls = raw.get("urls")
    return [(url, urls_ctx.at(i, raw_urls)) for i, url in enumerate(fields.get("urls", []))]


def _check_directory(ctx: Ctx, raw: Any, fields: dict[str, Any]) -> None:
    starttls, allow_plain = fields.get("starttls", False), fields.get("allow_plain", False)
    for url, url_ctx in _url_contexts(ctx, raw, fields):
        plain = url.lower().startswith("ldap://")
        if plain and not starttls and not allow_plain:
            url_ctx.report(
                f"'{url}' is plain LDAP: use ldaps://, set starttls: true, "
                "or accept it with allow_plain: true"
            )
        if not plain and starttls:
            ctx.at("starttls", raw).report(f"starttls applies to ldap:// URLs only, not '{url}'")
    if fields.get("auth") == "kerberos":
        _check_kerberos(ctx, raw, fields)
    elif ("bind_dn" in fields) != ("bind_password" in fields):
        missing = "bind_password" if "bind_dn" in fields else "bind_dn"
        ctx.report(f"bind_dn and bind_password go together; '{missing}' is missing")


def _check_kerberos(ctx: Ctx, raw: Any, fields: dict[str, Any]) -> None:
    """``auth: kerberos``: no bind credentials, and a host name for the service principal.

    The ticket comes from the caller's credential cache, so a DN or password here would be
    silently unused; and Kerberos asks for a ticket to ``ldap/<host>``, which an IP address
    does not name (a DC registers its ``ldap/`` principals under its DNS names).
    """
    for key in ("bind_dn", "bind_password"):
        if key in raw:
            ctx.at(key, raw).report(
                f"auth: kerberos binds with the Kerberos credential cache (kinit, KRB5CCNAME), "
                f"not a DN and password: remove '{key}'"
            )
    if "server_name" in raw:
        return
    for url, url_ctx in _url_contexts(ctx, raw, fields):
        host = urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        url_ctx.report(
            f"auth: kerberos needs the domain controller's DNS name for its service ticket "
            f"(ldap/<name>), not the address {host}: write the name in the URL or set server_name"
        )


def role_name(ctx: Ctx, value: Any) -> str:
    """One of the deployment roles (`agent.roles.ROLES`)."""
    return choice(*ROLES)(ctx, value)  # type: ignore[no-any-return]


def role_list(ctx: Ctx, value: Any) -> list[str]:
    """``mfa_roles``: the roles of a host, as a list (a single role name is accepted too)."""
    if isinstance(value, str) and not is_unevaluated(value):
        value = [value]
    return list_of(role_name)(ctx, value)  # type: ignore[no-any-return]


def role_groups(ctx: Ctx, value: Any) -> dict[str, tuple[str, ...]]:
    """``mfa_role_groups``: role → the inventory groups whose hosts have that role."""
    if not isinstance(value, Mapping):
        expect(ctx, value, f"a mapping of roles ({', '.join(ROLES)}) to lists of group names")
    result: dict[str, tuple[str, ...]] = {}
    bad = False
    for role, groups in value.items():
        sub = ctx.at(str(role), value)
        if role not in ROLES:
            hint = suggest(str(role), ROLES)
            sub.report(f"unknown role '{role}'{hint}; roles: {', '.join(ROLES)}")
            bad = True
            continue
        if isinstance(groups, str) and not is_unevaluated(groups):
            groups = [groups]
        try:
            result[role] = tuple(list_of(text)(sub, groups))
        except Rejected:
            bad = True
    if bad:
        raise Rejected(ctx.key)
    return result


_ZONE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def zone(ctx: Ctx, value: Any) -> str:
    """``mfa_zone``: the network zone whose workers read the host (a Celery queue name)."""
    name = text(ctx, value)
    if not _ZONE.match(name):
        ctx.fail(f"'{name[:60]}' is not a zone name (letters, digits, '_', '.', '-'; 1-63)")
    return name


#: Every ``mfa_*`` variable and its validator.
MFA_VARIABLES: Final[Mapping[str, Validator]] = {
    "mfa_roles": role_list,
    "mfa_role_groups": role_groups,
    "mfa_directory": directory,
    "mfa_networks": networks,
    "mfa_deployment": deployment,
    "mfa_phonefactor_admins_allowed": list_of(directory_name),
    "mfa_clock_skew_max_seconds": integer(1),
    "mfa_allow_insecure_transport": boolean,
    "mfa_ssh_key_passphrase": secret,
    "mfa_zone": zone,
}

#: ``mfa_*`` variables that describe the whole deployment: only the ``all`` group may set them.
INVENTORY_WIDE: Final = frozenset(
    {"mfa_directory", "mfa_deployment", "mfa_phonefactor_admins_allowed", "mfa_role_groups"}
)

#: Password variables: env lookups become `Secret`s here, and inline values warn.
PASSWORD_VARIABLES: Final = ("ansible_password", "ansible_ssh_pass", "ansible_winrm_password")
#: Secrets that are not passwords of the connection itself.
OTHER_SECRETS: Final = ("mfa_ssh_key_passphrase",)


def host_value(ctx: Ctx, value: Any) -> str | None:
    """``ansible_host``: a string; empty or null are reported for role hosts by the loader."""
    if value is None:
        return None
    return any_text(ctx, value)


def ssh_args(ctx: Ctx, value: Any) -> str:
    """``ansible_ssh_common_args``: text whose options mfa-agent honours must make sense."""
    text = any_text(ctx, value)
    try:
        parse_ssh_args(text)
    except SshArgsError as exc:
        ctx.fail(exc.message)
    return text


#: Every Ansible connection variable the agent reads, and its validator.
CONNECTION_VARIABLES: Final[Mapping[str, Validator]] = {
    "ansible_host": host_value,
    "ansible_port": integer(1, 65535),
    "ansible_user": text,
    **dict.fromkeys(PASSWORD_VARIABLES, secret),
    # Any connection and shell: hosts mfa-agent does not read may use others (local, sh); the
    # loader refuses them for hosts with a role, and --sweep lists such hosts as not swept.
    "ansible_connection": text,
    "ansible_winrm_transport": choice(*get_args(WinrmTransport)),
    "ansible_winrm_scheme": choice(*get_args(WinrmScheme)),
    "ansible_winrm_server_cert_validation": choice(*get_args(CertValidation)),
    "ansible_winrm_ca_trust_path": text,
    "ansible_winrm_cert_pem": text,
    "ansible_winrm_cert_key_pem": text,
    "ansible_ssh_private_key_file": text,
    "ansible_shell_type": text,
    "ansible_ssh_common_args": ssh_args,
}

#: Read only from a group's vars in the inventory file, as Ansible does.
GROUP_PRIORITY: Final = "ansible_group_priority"
group_priority = integer()
