"""The catalogue as a whole: every id registered once, with verbatim guidance and remediation."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from checks_helpers import GUIDANCE_FILE, catalogue

from agent.model import Scope, Severity
from agent.registry import load_catalogue
from agent.roles import ANY_ROLE, ROLES
from checks import _guidance as g

CHECKS_DIR = Path(__file__).resolve().parent.parent / "checks"


def _decorated_ids() -> set[str]:
    """Every id passed to @host_check/@fleet_check in the source of checks/*.py (read, not run):
    a check module that the package forgets to import shows up as a missing id."""
    ids: set[str] = set()
    for path in CHECKS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in {"host_check", "fleet_check"} and node.args
                    and isinstance(node.args[0], ast.Constant)):
                ids.add(str(node.args[0].value))
    return ids


EXPECTED_IDS = _decorated_ids()

#: Checks whose sentence comes from another Microsoft document (checks._guidance.cite).
CITING = {c.meta.id for c in catalogue().values() if c.meta.guidance.source in g.CITED}
RETIREMENT_CHECK = "mfa-server-retired"


def _rendered(markdown: str) -> str:
    """Markdown as a reader sees it: ``[text](url)`` is ``text``, no ``**``, single spaces."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = text.replace("**", "")
    return re.sub(r"\s+", " ", text)


def test_every_expected_id_is_registered_exactly_once() -> None:
    ids = [c.meta.id for c in load_catalogue()]
    assert sorted(ids) == sorted(EXPECTED_IDS)
    assert len(ids) == len(set(ids))


def test_loading_twice_registers_nothing_twice() -> None:
    importlib.import_module("checks")
    assert len(load_catalogue()) == len(load_catalogue()) == len(EXPECTED_IDS)


@pytest.mark.parametrize("check_id", sorted(EXPECTED_IDS))
def test_metadata_is_complete(check_id: str) -> None:
    check = catalogue()[check_id]
    meta = check.meta
    assert meta.title.strip()
    assert isinstance(meta.severity, Severity)
    assert meta.guidance.quote.strip()
    assert meta.guidance.source.strip()
    assert len(meta.remediation) > 80, "remediation should be steps an engineer can follow"
    assert meta.references
    assert all(ref.startswith("https://") for ref in meta.references)
    assert all(role in (*ROLES, ANY_ROLE) for role in meta.roles)
    fn: Callable[..., object] | None
    if meta.scope is Scope.HOST:
        assert check.host_fn is not None
        assert check.fleet_fn is None
        assert meta.roles, "a host check must name the roles it runs on"
        fn = check.host_fn
    else:
        assert check.fleet_fn is not None
        assert check.host_fn is None
        fn = check.fleet_fn
    assert fn.__doc__
    assert fn.__doc__.strip()


def test_severities() -> None:
    checks = catalogue()
    assert checks["mfa-server-retired"].meta.severity is Severity.CRITICAL
    assert checks["trusted-ips"].meta.severity is Severity.INFO
    others = [c for i, c in checks.items() if i != "mfa-server-retired"]
    assert all(c.meta.severity is not Severity.CRITICAL for c in others)


@pytest.mark.parametrize("check_id", sorted(EXPECTED_IDS - CITING))
def test_quote_is_verbatim_in_the_guidance(check_id: str) -> None:
    guidance = _rendered(GUIDANCE_FILE.read_text(encoding="utf-8"))
    quote = catalogue()[check_id].meta.guidance.quote
    assert _rendered(quote) in guidance, f"{check_id} quotes what the guidance does not say"
    assert catalogue()[check_id].meta.guidance.source.startswith(g.GUIDE_TITLE)


@pytest.mark.parametrize("check_id", sorted(CITING))
def test_a_check_citing_another_document_lists_it(check_id: str) -> None:
    meta = catalogue()[check_id].meta
    url = g.CITED[meta.guidance.source]
    assert url.startswith("https://learn.microsoft.com/")
    assert url in meta.references, f"{check_id} cites {url} without listing it"


def test_the_vendored_guidance_keeps_its_attribution() -> None:
    notice = (GUIDANCE_FILE.parent / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in notice
    assert "Microsoft" in notice
    assert "creativecommons.org/licenses/by/4.0" in notice
    assert "Security guidance for using Azure Multi-Factor Authentication" in (
        GUIDANCE_FILE.read_text(encoding="utf-8"))


def test_retirement_quote_is_the_notice() -> None:
    meta = catalogue()[RETIREMENT_CHECK].meta
    assert RETIREMENT_CHECK in CITING
    assert "will no longer service multifactor authentication (MFA) requests" in (
        meta.guidance.quote)
    assert "September 30, 2024" in meta.guidance.quote


def test_the_known_disagreements_are_recorded() -> None:
    checks = catalogue()
    aspnet = checks["portal-aspnet-v2"].meta.guidance
    assert "v2.0.507207" in aspnet.quote  # the guidance's typo, quoted as written
    assert "2.0.50727" in aspnet.notes
    assert "typo" in aspnet.notes
    assert "7.0" in checks["portal-iis-version"].meta.guidance.notes
    os_notes = checks["adfs-os-version"].meta.guidance.notes
    assert "2012 R2" in os_notes
    assert "2016" in os_notes
    assert "later" in os_notes
