"""``--limit`` selection with Ansible's pattern syntax."""

from __future__ import annotations

import pytest

from agent.errors import InputError
from agent.inventory import Inventory, load_inventory

INVENTORY = """
all:
  hosts:
    jump.corp.example:
  children:
    adfs:
      hosts:
        adfs[01:03].corp.example:
    mfa_server:
      hosts:
        mfa01.corp.example:
        "2001:db8::5":
    perimeter:
      children:
        user_portal:
          hosts:
            portal01.dmz.example:
            adfs03.corp.example:
    empty:
"""


@pytest.fixture(scope="module")
def inv(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    path = tmp_path_factory.mktemp("select") / "hosts.yaml"
    path.write_text(INVENTORY)
    return load_inventory(path)


def names(inv: Inventory, *patterns: str) -> list[str]:
    return [h.name for h in inv.select(list(patterns))]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ((), ["jump", "adfs01", "adfs02", "adfs03", "mfa01", "2001:db8::5", "portal01"]),
        (("adfs02.corp.example",), ["adfs02"]),
        (("adfs",), ["adfs01", "adfs02", "adfs03"]),
        (("perimeter",), ["adfs03", "portal01"]),
        (("adfs0[12]*",), ["adfs01", "adfs02"]),
        (("*.dmz.example",), ["portal01"]),
        (("mfa_server,user_portal",), ["adfs03", "mfa01", "2001:db8::5", "portal01"]),
        (("mfa_server:user_portal",), ["adfs03", "mfa01", "2001:db8::5", "portal01"]),
        (("user_portal", "mfa_server"), ["adfs03", "mfa01", "2001:db8::5", "portal01"]),
        (("adfs:!adfs02.corp.example",), ["adfs01", "adfs03"]),
        (("!adfs",), ["jump", "mfa01", "2001:db8::5", "portal01"]),
        (("adfs:&perimeter",), ["adfs03"]),
        (("&adfs", "!adfs01*"), ["adfs02", "adfs03"]),
        # As in Ansible: plain patterns first, then &, then !, whatever the order written.
        (("!adfs", "adfs"), []),
        (("2001:db8::5",), ["2001:db8::5"]),
        (("~adfs0[13]",), ["adfs01", "adfs03"]),
        (("adfs[0]",), ["adfs01"]),
        (("adfs[-1]",), ["adfs03"]),
        (("adfs[1:]",), ["adfs02", "adfs03"]),
        (("adfs[0:1]",), ["adfs01", "adfs02"]),
        (("empty",), []),
        (("ungrouped",), ["jump"]),
        (("all",), ["jump", "adfs01", "adfs02", "adfs03", "mfa01", "2001:db8::5", "portal01"]),
        ((" adfs , ",), ["adfs01", "adfs02", "adfs03"]),
    ],
)
def test_select(inv: Inventory, patterns: tuple[str, ...], expected: list[str]) -> None:
    assert [n.split(".")[0] if "." in n else n for n in names(inv, *patterns)] == expected


def test_unknown_patterns_are_all_named(inv: Inventory) -> None:
    with pytest.raises(InputError) as info:
        inv.select(["adfs,nosuchgroup", "!ghost*", "&alsonot"])
    assert [p.key for p in info.value.problems] == ["nosuchgroup", "&alsonot", "!ghost*"]
    assert all(p.file == "--limit" for p in info.value.problems)
    assert "nosuchgroup" in str(info.value)


@pytest.mark.parametrize("pattern", ["~adfs(", "adfs[7]", "adfs[5:]", "!", "&"])
def test_bad_patterns(inv: Inventory, pattern: str) -> None:
    with pytest.raises(InputError):
        inv.select([pattern])
