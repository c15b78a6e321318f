"""The HTML report in a real browser: Debian's headless Chromium loads the page from a file and
dumps the DOM it built, and its console output (``--enable-logging=stderr``) must be empty.

Chromium writes every console message, including uncaught exceptions and Content Security Policy
violations, to stderr as ``…:INFO:CONSOLE:<line>] "<message>", source: …`` (older releases:
``CONSOLE(<line>)``). `test_console_errors_are_caught` proves on pages with a deliberate
``throw``, a remote image and an injected script that the check notices them.

No network traffic: the page is a ``file://`` URL, background networking, component updates and
sync are off, QUIC is off, and every host name resolves to nothing (``--host-resolver-rules``).
Each run is bounded by `TIMEOUT` and runs in its own process group, killed afterwards.

Marked `needs_server` (it starts a real program): it fails instead of skipping in CI when
chromium is missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_report_formats import FULL_SCORE, XSS, Page, full_report

from agent.report import render_html
from tests.conftest import require_or_fail

#: Seconds one browser run may take (it takes about a second).
TIMEOUT = 60

#: A console message or an uncaught exception in Chromium's stderr log.
CONSOLE = re.compile(r"(?::CONSOLE(?::\d+|\(\d+\))\].*|Uncaught .*)")

pytestmark = pytest.mark.needs_server


@dataclass(frozen=True)
class Rendered:
    """What Chromium made of a page."""

    dom: str
    console: list[str]
    stderr: str
    seconds: float


def chromium_command(chromium: str, url: str, profile: Path) -> list[str]:
    """Headless Chromium that loads `url`, prints the DOM and logs the console to stderr."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",  # root in a container: the setuid sandbox is unavailable
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        url,
    ]


def render(chromium: str, html_text: str, tmp_path: Path, name: str = "page.html") -> Rendered:
    """Load `html_text` from a file in Chromium; the DOM it built and its console messages."""
    page = tmp_path / name
    page.write_text(html_text, encoding="utf-8")
    home = tmp_path / f"{name}.home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    command = chromium_command(chromium, page.as_uri(), home / "profile")
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group: killed as a whole below
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    seconds = time.monotonic() - started
    stderr = err.decode("utf-8", "replace")
    assert process.returncode == 0, stderr
    console = [m.group() for m in CONSOLE.finditer(stderr)]
    return Rendered(out.decode("utf-8"), console, stderr, seconds)


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; a failure in CI when it is missing, a skip elsewhere."""
    path = shutil.which("chromium")
    require_or_fail(path is not None, "chromium")
    assert path is not None
    return path


def test_report_renders_without_console_messages(chromium: str, tmp_path: Path) -> None:
    rendered = render(chromium, render_html(full_report()), tmp_path)
    assert rendered.console == [], rendered.stderr
    dom = Page(rendered.dom)
    assert dom.text("compliance-score") == FULL_SCORE
    assert "PASS / (PASS + FAIL + ERROR + WAIVED)" in dom.text("score-definition")
    failures = dom.text("fail-results")
    assert "MFA Server 8.0.1.1 is still installed" in failures
    assert "banner " + XSS in failures  # shown as text, not run
    assert not [tag for tag, _ in dom.tags if tag == "script"]
    waivers = dom.text("waivers-table")
    assert "EXPIRES SOON adfs-adapter-installed adfs02 2024-05-04 3" in waivers
    assert "EXPIRED no longer applies mfa-server-retired" in waivers
    assert "UNUSED matched nothing portal-https-only" in waivers
    rows = [a.get("class") for tag, a in dom.tags if tag == "tr" and a.get("class")]
    assert rows == ["w-soon", "w-active", "w-expired", "w-unused"]
    assert rendered.seconds < TIMEOUT


@pytest.mark.parametrize(
    ("name", "page", "expected"),
    [
        pytest.param(
            "throw",
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
            '<p id="p">x</p><script>throw new Error("deliberate failure")</script></body></html>',
            "Uncaught Error: deliberate failure",
            id="throw",
        ),
        pytest.param(
            "console-error",
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
            '<script>console.error("deliberate console error")</script></body></html>',
            "deliberate console error",
            id="console-error",
        ),
        pytest.param(
            "remote-image",
            render_html(full_report()).replace(
                "<main>", '<main><img src="http://cdn.example.invalid/tracker.png" alt="">'
            ),
            "violates the following Content Security Policy directive",
            id="remote-image",
        ),
        pytest.param(
            "injected-script",
            render_html(full_report()).replace("<main>", "<main><script>window.x = 1</script>"),
            "Content Security Policy",
            id="injected-script",
        ),
    ],
)
def test_console_errors_are_caught(
    chromium: str, tmp_path: Path, name: str, page: str, expected: str
) -> None:
    """The console check is not vacuous: an exception, console.error, a remote load and an
    injected script (both blocked by the report's CSP) all show up."""
    rendered = render(chromium, page, tmp_path, f"{name}.html")
    assert any(expected in message for message in rendered.console), rendered.stderr
