"""The `mfa-agent` command line.

Exit codes: 0 no FAIL or ERROR (WAIVED does not fail) · 1 at least one FAIL · 2 no FAIL but at
least one ERROR · 3 invalid input (inventory, arguments, facts, waivers or history file; nothing
scanned) · 4 internal error (a bug) · 130 interrupted (what was gathered is still reported).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import gc
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from agent import __version__
from agent.errors import AgentError, ExitCode, InputError, Problem
from agent.report.writer import FORMATS

if TYPE_CHECKING:
    from rich.console import Console

    from agent.history import History, StoredScan
    from agent.inventory import Inventory
    from agent.inventory.vault import VaultKeys
    from agent.scan import Gatherer, ScanOptions, ScanRun

EXIT_CODES_HELP = """\b
Exit codes:
  0  no FAIL and no ERROR (WAIVED results do not fail)
  1  at least one FAIL
  2  no FAIL, but at least one ERROR (a host or fact could not be read)
  3  invalid input: inventory, arguments, facts file, waivers file or history
     database (nothing was scanned); also a report that could not be written or a
     scan the locked history could not record (the report is still complete)
  4  internal error (a bug: please report it with the output of --debug)
  130 interrupted (Ctrl-C): the results gathered so far are still reported
"""

#: Loggers that would write authentication tokens (NTLM, Kerberos, CredSSP) at DEBUG.
AUTH_LOGGERS = (
    "spnego",
    "requests_ntlm",
    "ntlm_auth",
    "requests_kerberos",
    "winrm.vendor.requests_kerberos",
    "requests_credssp",
    "krb5",
    "gssapi",
)

INTERNAL_ERROR = int(ExitCode.INTERNAL)
INTERRUPTED = int(ExitCode.INTERRUPTED)


class _State:
    """Options that apply to every subcommand."""

    debug: bool = False


_state = _State()


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


#: Console width when stdout is not a terminal: tables print whole values, never cut or wrapped.
_PIPED_WIDTH = 100_000


def _table_console() -> Console:
    """A console for tables on stdout: the terminal's width, or unbounded when piped."""
    from rich.console import Console

    piped = not sys.stdout.isatty()
    return Console(highlight=False, width=_PIPED_WIDTH if piped else None, soft_wrap=piped)


def _print_problems(title: str, problems: Sequence[Problem]) -> None:
    err = _stderr()
    err.print(f"[bold red]mfa-agent: {title}[/]", markup=True)
    for problem in problems:
        err.print(f"  {problem}", markup=False)


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mfa-agent")
@click.option("--debug", is_flag=True, help="Log debug detail to stderr and show tracebacks.")
def cli(debug: bool) -> None:
    """Validate an on-premises Azure MFA deployment against Microsoft's security guidance.

    Reads an Ansible-style inventory of AD FS, MFA Server, User Portal and directory-sync
    hosts, gathers facts (or replays recorded ones), evaluates the check catalogue and reports
    PASS / FAIL / ERROR / SKIP / MANUAL per host and check, with evidence and remediation.
    """
    _configure_logging(debug)


def _configure_logging(debug: bool) -> None:
    _state.debug = debug
    # basicConfig adds the stderr handler once; the level is set apart so that a --debug after
    # the subcommand still applies (and handlers others installed, e.g. pytest's, stay).
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(logging.DEBUG if debug else logging.WARNING)
    # paramiko logs every failed handshake with a traceback; the host's ERROR result already
    # says what happened, so its own log is only for --debug.
    logging.getLogger("paramiko").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    # Authentication libraries log their tokens at DEBUG: an NTLM challenge and response pair is
    # a crackable password hash. Never, not even with --debug.
    for name in AUTH_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _debug_here(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _configure_logging(True)


#: ``--debug`` after the subcommand too (``mfa-agent scan … --debug``), as people type it.
_DEBUG_OPTION = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    callback=_debug_here,
    help="Log debug detail to stderr and show tracebacks (same as mfa-agent --debug).",
)


def _load_inventory(path: str) -> Inventory:
    from agent.inventory import load_inventory

    return load_inventory(path)


# -- inventory options (-i, vault, --roles): shared by scan and inventory --------------------


@dataclasses.dataclass
class _InventoryArgs:
    paths: list[str] = dataclasses.field(default_factory=list)
    vault_password_files: list[str] = dataclasses.field(default_factory=list)
    vault_ids: list[str] = dataclasses.field(default_factory=list)
    ask_vault_pass: bool = False
    roles: str | None = None


def _inventory_args() -> _InventoryArgs:
    ctx = click.get_current_context()
    args: _InventoryArgs = ctx.meta.setdefault("mfa_agent.inventory", _InventoryArgs())
    return args


def _store(field_name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        args = ctx.meta.setdefault("mfa_agent.inventory", _InventoryArgs())
        setattr(args, field_name, list(value) if isinstance(value, tuple) else value)

    return callback


def _inventory_options(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """-i (repeatable; files or directories), vault passwords and --roles, for a command."""
    options = [
        click.option(
            "-i",
            "--inventory",
            multiple=True,
            required=required,
            metavar="PATH",
            expose_value=False,
            callback=_store("paths"),
            help="Inventory: Ansible YAML, INI or JSON, or a directory of them (repeatable; "
            "merged as Ansible merges them).",
        ),
        click.option(
            "--vault-password-file",
            multiple=True,
            metavar="FILE",
            expose_value=False,
            callback=_store("vault_password_files"),
            help="Ansible Vault password file (an executable file is run); also "
            "$ANSIBLE_VAULT_PASSWORD_FILE.",
        ),
        click.option(
            "--vault-id",
            multiple=True,
            metavar="[LABEL@]FILE",
            expose_value=False,
            callback=_store("vault_ids"),
            help="Ansible Vault id: a labelled password file, or LABEL@prompt (repeatable).",
        ),
        click.option(
            "--ask-vault-pass",
            is_flag=True,
            expose_value=False,
            callback=_store("ask_vault_pass"),
            help="Ask for the Ansible Vault password on the terminal.",
        ),
        click.option(
            "--roles",
            metavar="FILE",
            expose_value=False,
            callback=_store("roles"),
            help="YAML file with mfa_role_groups: which of your groups hold which role.",
        ),
    ]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _prompt_vault_password(text: str) -> str:
    return click.prompt(text, hide_input=True, err=True, default="", show_default=False)


def _vault_keys(args: _InventoryArgs) -> VaultKeys:
    from agent.inventory.vault import collect_passwords

    prompt = _prompt_vault_password if sys.stdin.isatty() else None
    return collect_passwords(
        args.vault_password_files, args.vault_ids, args.ask_vault_pass, prompt
    )


def _load_given_inventory(args: _InventoryArgs, *, defer_vault: bool = False) -> Inventory:
    """The inventory the -i, vault and --roles options name.

    `defer_vault`: without a vault password, ``!vault`` passwords stay encrypted (the workers
    of a ``--broker`` scan decrypt them with their own vault password).
    """
    from agent.inventory import load_inventory

    keys = _vault_keys(args)
    keys.defer = defer_vault
    return load_inventory(list(args.paths), vault=keys, roles_file=args.roles)


@cli.command(epilog=EXIT_CODES_HELP)
@_DEBUG_OPTION
@_inventory_options(required=False)
@click.option(
    "--replay",
    metavar="FACTS",
    help="Evaluate recorded facts from FACTS (a facts file) instead of connecting to hosts.",
)
@click.option("--save-facts", metavar="FILE", help="Write the facts this scan used to FILE.")
@click.option(
    "--check", "include", multiple=True, metavar="ID", help="Run only this check (repeatable)."
)
@click.option(
    "--skip-check", "skip", multiple=True, metavar="ID", help="Do not run this check (repeatable)."
)
@click.option(
    "--limit",
    multiple=True,
    metavar="PATTERN",
    help="Only these hosts: names, groups, roles or globs, ',' separated; '!x' excludes "
    "(repeatable).",
)
@click.option(
    "--format",
    "formats",
    multiple=True,
    type=click.Choice(FORMATS),
    help="Report format to write (repeatable). With -o and no --format: all formats. "
    "Without -o, a single format goes to stdout instead of the terminal report.",
)
@click.option(
    "-o", "--output-dir", metavar="DIR", help="Directory for report files (written atomically)."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=64,
    show_default=True,
    help="Threads for hosts read one per thread: SSH, and WinRM over Kerberos, CredSSP or "
    "certificates (at most 8 sign-ins with one SSH bastion at a time, whatever this is). WinRM "
    "hosts over NTLM or Basic are read concurrently on their own, as many at once as file "
    "descriptors allow.",
)
@click.option(
    "--winrm-client",
    type=click.Choice(["fast", "pywinrm"]),
    default="fast",
    show_default=True,
    help="fast: NTLM/Basic WinRM hosts on the asyncio client (5 requests a host); pywinrm: "
    "every WinRM host through pywinrm, one thread each (the previous engine).",
)
@click.option(
    "--host-timeout",
    type=click.FloatRange(1, 3600),
    default=120,
    show_default=True,
    help="Seconds one host may take in all before it is an ERROR (timed out).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(0.1, 600),
    default=10,
    show_default=True,
    help="Seconds to wait for a TCP connection.",
)
@click.option(
    "--operation-timeout",
    type=click.IntRange(1, 600),
    default=20,
    show_default=True,
    help="WS-Management OperationTimeout in seconds (one request).",
)
@click.option(
    "--broker",
    metavar="URL",
    help="Read hosts through Celery workers of their zones (mfa_zone) on this Redis broker "
    "(redis://host:6379/0); needs the celery extra.",
)
@click.option(
    "--zone-timeout",
    type=click.FloatRange(1, 86400),
    default=120,
    show_default=True,
    help="With --broker: seconds from dispatch for a zone's first host to start before its "
    "hosts are ERROR (no worker for zone).",
)
@click.option(
    "--waivers",
    "waivers_path",
    metavar="FILE",
    help="Waivers (YAML): FAILs they cover become WAIVED until they expire.",
)
@click.option(
    "--db",
    metavar="FILE",
    help="History database (default: $MFA_AGENT_DB, else "
    "~/.local/state/mfa-agent/history.sqlite3).",
)
@click.option(
    "--no-history", is_flag=True, help="Do not record this scan or compare with the last."
)
@click.option("-q", "--quiet", is_flag=True, help="No terminal report or progress (for cron).")
@click.option(
    "--color/--no-color", default=None, help="Force or disable colour (default: on a TTY)."
)
@click.option(
    "--sweep",
    is_flag=True,
    help="Also read the base facts (OS, MFA Server components) of every Windows host in scope "
    "without a role, to find forgotten MFA Server installs.",
)
def scan(
    replay: str | None,
    save_facts: str | None,
    include: tuple[str, ...],
    skip: tuple[str, ...],
    limit: tuple[str, ...],
    formats: tuple[str, ...],
    output_dir: str | None,
    workers: int,
    winrm_client: str,
    host_timeout: float,
    connect_timeout: float,
    operation_timeout: int,
    broker: str | None,
    zone_timeout: float,
    waivers_path: str | None,
    db: str | None,
    no_history: bool,
    quiet: bool,
    color: bool | None,
    sweep: bool,
) -> None:
    """Scan the hosts of an inventory, or replay recorded facts, and report.

    Live (default): connects to every host of the inventory over WinRM or SSH (per host:
    ansible_connection), then to the directory over LDAP. Replay (--replay FACTS):
    evaluates a facts file written earlier by --save-facts, with no network at all.
    """
    from agent import factsfile
    from agent.history import History, HistoryUnavailable
    from agent.registry import load_catalogue
    from agent.scan import ScanOptions, finalize
    from agent.scan import replay as replay_scan
    from agent.waivers import load_waivers

    inventory_args = _inventory_args()
    if replay is None and not inventory_args.paths:
        raise InputError(
            Problem("<arguments>", "give an inventory (-i FILE) or a facts file (--replay FILE)")
        )
    output = _Output(save_facts, formats, output_dir, color, quiet)
    _check_output_args(formats, output_dir, save_facts)
    # Everything the user gave is validated before a single host is contacted.
    inventory = (
        _load_given_inventory(inventory_args, defer_vault=broker is not None)
        if inventory_args.paths
        else None
    )
    known = [c.meta.id for c in load_catalogue()]
    waivers = load_waivers(waivers_path, known) if waivers_path else ()
    facts = factsfile.load(replay) if replay is not None else None
    zones = _zone_gather(broker, zone_timeout, replay is not None)
    history: History | None = None
    history_problem: HistoryUnavailable | None = None
    try:
        history = None if no_history else History.open(Path(db).expanduser() if db else None)
    except HistoryUnavailable as exc:  # locked by another scan: scan anyway, say it at the end
        history_problem = exc
    with contextlib.closing(history) if history is not None else contextlib.nullcontext():
        options = ScanOptions(include=include, skip=skip, limit=limit, sweep=sweep)
        if facts is not None:
            run = replay_scan(facts, inventory, options)
        else:
            assert inventory is not None  # checked above: no --replay means -i was given
            run = _live_scan(
                inventory,
                options,
                workers=workers,
                timeouts=(connect_timeout, operation_timeout, host_timeout),
                progress=not quiet,
                gatherer=zones,
                fast_winrm=winrm_client == "fast",
            )
        try:
            report = finalize(run.report, waivers, history)
        except HistoryUnavailable as exc:
            history_problem = exc
            report = finalize(run.report, waivers)
    if history_problem is not None:
        note = f"this scan was not recorded in the history: {history_problem.reason}"
        report = dataclasses.replace(report, warnings=(*report.warnings, note))
    run = dataclasses.replace(run, report=report)
    _deliver(run, output, () if history_problem is None else history_problem.problems)


def _check_output_args(
    formats: Sequence[str], output_dir: str | None, save_facts: str | None = None
) -> None:
    """Refuse outputs that cannot be written before a (possibly long) scan starts."""
    problems = []
    if len(set(formats)) > 1 and output_dir is None:
        problems.append(
            Problem(
                "<arguments>", "several --format need an output directory (-o DIR)", key="--format"
            )
        )
    if output_dir is not None:
        out = Path(output_dir)
        if out.exists() and not out.is_dir():
            problems.append(Problem(output_dir, "is not a directory", key="--output-dir"))
        elif not out.exists() and not _creatable(out):
            problems.append(Problem(output_dir, "cannot be created", key="--output-dir"))
    if save_facts is not None:
        target = Path(save_facts)
        if target.is_dir():
            problems.append(Problem(save_facts, "is a directory", key="--save-facts"))
        elif target.parent.exists() and not target.parent.is_dir():
            problems.append(Problem(save_facts, "its directory is a file", key="--save-facts"))
        elif not target.parent.exists() and not _creatable(target.parent):
            problems.append(
                Problem(save_facts, "its directory cannot be created", key="--save-facts")
            )
    if problems:
        raise InputError(problems)


def _creatable(directory: Path) -> bool:
    """Whether the nearest existing ancestor of `directory` is a writable directory."""
    for parent in directory.parents:
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def _zone_gather(broker: str | None, zone_timeout: float, replay: bool) -> Gatherer | None:
    """With --broker: the gather step through the zones' workers, its broker checked now."""
    if broker is None:
        return None
    if replay:
        raise InputError(Problem("<arguments>", "--broker applies to live scans, not --replay",
                                 key="--broker"))
    from agent.distributed.dispatch import DispatchOptions, ZoneGather

    zones = ZoneGather(DispatchOptions(broker=broker, zone_timeout=zone_timeout))
    zones.check_broker()
    return zones


def _live_scan(
    inventory: Inventory,
    options: ScanOptions,
    *,
    workers: int,
    timeouts: tuple[float, int, float],
    progress: bool = True,
    gatherer: Gatherer | None = None,
    fast_winrm: bool = True,
) -> ScanRun:
    from agent.connectors.common import Timeouts
    from agent.gather import GatherOptions
    from agent.progress import ScanProgress
    from agent.scan import live

    connect, operation, host = timeouts
    gather_options = GatherOptions(
        workers=workers, timeouts=Timeouts(connect=connect, operation=operation, host=host),
        fast_winrm=fast_winrm,
    )
    with ScanProgress(enabled=None if progress else False) as shown:
        run = live(
            inventory, options, gather_options, on_done=shown.host_done, on_start=shown.start,
            gatherer=gatherer,
        )
    if gatherer is None:
        from agent.distributed import zones_note

        note = zones_note(inventory)
        if note:
            run = dataclasses.replace(
                run, report=dataclasses.replace(run.report, warnings=(*run.report.warnings, note))
            )
    return run


@dataclass(frozen=True)
class _Output:
    """Where a scan's results go."""

    save_facts: str | None
    formats: Sequence[str]
    output_dir: str | None
    color: bool | None
    quiet: bool = False


def _deliver(run: ScanRun, out: _Output, late: Sequence[Problem] = ()) -> NoReturn:
    """Write every requested file, then show the report; one failed write loses nothing else.

    `late` are input problems found after the scan (the history could not record it): they
    are shown after the report and make the exit code 3, as a failed write does.
    """
    save_facts, formats, output_dir = out.save_facts, out.formats, out.output_dir
    from agent import factsfile
    from agent.report.writer import RENDERERS, Output, report_outputs, write_atomic

    outputs: list[Output] = []
    if save_facts:
        outputs.append(Output(Path(save_facts), partial(factsfile.dumps, run.facts)))
    if output_dir is not None:
        outputs += report_outputs(run.report, formats or FORMATS, Path(output_dir))
    written: list[Path] = []
    failures: list[Problem] = []
    for output in outputs:
        path = output.path
        try:
            write_atomic(path, output.render(), output.mode)
            written.append(path)
        except OSError as exc:
            failures.append(Problem(str(path), f"cannot write: {exc.strerror or exc}"))
        except Exception as exc:  # one output that cannot be rendered loses no other
            logging.getLogger(__name__).debug("rendering %s failed", path, exc_info=True)
            failures.append(Problem(str(path), f"cannot render: {type(exc).__name__}"))
    if formats and output_dir is None:
        click.echo(RENDERERS[formats[0]](run.report), nl=False)
    elif not out.quiet:
        from rich.console import Console

        from agent.report.terminal import render_terminal

        console = Console(
            force_terminal=out.color if out.color else None,
            no_color=out.color is False,
            highlight=False,
            soft_wrap=False,
        )
        render_terminal(run.report, console)
    for path in [] if out.quiet else written:
        _stderr().print(f"wrote {path}", markup=False)
    if failures:
        _print_problems("some output could not be written", failures)
    if late:
        _print_problems("the scan was not recorded in the history", late)
    if failures or late:
        raise SystemExit(int(ExitCode.INVALID_INPUT))
    raise SystemExit(int(run.report.exit_code()))


@cli.command(epilog=EXIT_CODES_HELP)
@_DEBUG_OPTION
@click.option(
    "--scheme",
    type=click.Choice(["http", "https"]),
    default="http",
    show_default=True,
    help="http: NTLM with message encryption; https: NTLM over TLS with the lab's own CA.",
)
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMATS))
@click.option("-o", "--output-dir", metavar="DIR", help="Directory for report files.")
@click.option("--save-facts", metavar="FILE", help="Write the facts the demo gathered to FILE.")
@click.option(
    "--directory/--no-directory",
    default=True,
    help="Also start the lab's directory (a Samba AD DC; needs Samba and root). Default: on.",
)
@click.option("--color/--no-color", default=None)
def demo(
    scheme: str,
    formats: tuple[str, ...],
    output_dir: str | None,
    save_facts: str | None,
    directory: bool,
    color: bool | None,
) -> None:
    """Start the built-in simulated lab, scan it live over WinRM, report, and stop the lab.

    The lab is a small deployment with deliberate problems; its hosts are WS-Management servers
    on 127.0.1.x that the real WinRM client talks to. Two of them misbehave on purpose: one
    refuses the password, one never answers (the demo waits 6 s for it). When Samba is installed
    (and the demo runs as root) a throwaway Active Directory domain joins the lab, so the
    PhoneFactor Admins checks run live too.
    """
    from agent.lab.demo import run_demo
    from agent.scan import ScanOptions

    _check_output_args(formats, output_dir, save_facts)

    def scan_lab(inventory_path: Path) -> ScanRun:
        inventory = _load_inventory(str(inventory_path))
        return _live_scan(inventory, ScanOptions(), workers=8, timeouts=(2.0, 2, 6.0))

    run: ScanRun = run_demo(
        scan_lab,
        scheme="https" if scheme == "https" else "http",
        with_directory=directory,
        say=lambda line: _stderr().print(line, markup=False),
    )
    _deliver(run, _Output(save_facts, formats, output_dir, color))


@cli.command("worker")
@_DEBUG_OPTION
@click.option(
    "--broker", required=True, metavar="URL", envvar="MFA_AGENT_BROKER",
    help="Redis broker (redis://host:6379/0); default $MFA_AGENT_BROKER (keeps a password in "
    "the URL out of the process list).",
)
@click.option(
    "--zone", "zones", multiple=True, required=True, metavar="ZONE",
    help="Read the hosts of this zone (mfa_zone; repeatable).",
)
@click.option(
    "--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
    help="Hosts read at the same time.",
)
@click.option("--name", metavar="NAME", help="Celery node name (default: unique per process).")
@_inventory_options(required=False)
def worker_cmd(broker: str, zones: tuple[str, ...], concurrency: int, name: str | None) -> None:
    """Read hosts of ZONEs for scans sent through the broker (Celery worker; celery extra).

    Needs no inventory: each task carries one host's settings; its password is read from this
    worker's own environment ({{ lookup('env', 'NAME') }} in the coordinator's inventory) or
    decrypted with this worker's vault password (a !vault value; --vault-password-file,
    --vault-id, $ANSIBLE_VAULT_PASSWORD_FILE).
    """
    from agent.distributed.worker import check_zones, run_worker

    check_zones(zones)
    args = _inventory_args()
    if args.paths or args.roles:
        raise InputError(
            Problem("<arguments>", "a worker needs no inventory: tasks carry each host",
                    key="-i" if args.paths else "--roles")
        )
    raise SystemExit(run_worker(broker, zones, concurrency, name, vault=_vault_keys(args)))


@cli.group("lab")
def lab_group() -> None:
    """Run the simulated Windows lab for your own mocked runs (CI pipelines, trying things out)."""


@lab_group.command(
    "serve", epilog="Stop it with Ctrl-C or SIGTERM (its PID is in STATE_DIR/ready)."
)
@click.option(
    "--profiles",
    type=click.Path(file_okay=False, exists=True),
    help="Directory of host profiles (YAML); default: the built-in lab.",
)
@click.option(
    "--state-dir",
    default="mfa-agent-lab",
    show_default=True,
    help="Where inventory.yaml, lab.env (the password, mode 0600) and ready are written.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port for every host; 0 gives each host an ephemeral port.",
)
@click.option("--scheme", type=click.Choice(["http", "https"]), default="http", show_default=True)
@click.option(
    "--latency",
    type=click.FloatRange(0, 60),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Add this many seconds to every answer (a WAN or busy host; costs no CPU).",
)
@click.option(
    "--directory", is_flag=True, help="Also run the lab's directory (Samba AD DC; Samba and root)."
)
def lab_serve(
    profiles: str | None, state_dir: str, port: int, scheme: str, latency: float, directory: bool
) -> None:
    """Serve a lab until stopped, and write an inventory for it.

    \b
    Then, in another shell:
      set -a; . STATE_DIR/lab.env; set +a
      mfa-agent scan -i STATE_DIR/inventory.yaml
    """
    from agent.lab.server import main as serve

    argv = ["--state-dir", state_dir, "--port", str(port), "--scheme", scheme,
            "--latency", repr(latency)]
    if profiles:
        argv += ["--profiles", profiles]
    if directory:
        argv.append("--directory")
    raise SystemExit(serve(argv))


_DB_OPTION = click.option("--db", metavar="FILE", help="History database (default: as for scan).")


def _open_history(db: str | None) -> History:
    from agent.history import History

    return History.open(Path(db).expanduser() if db else None)


@cli.command("history")
@_DB_OPTION
@click.option("-i", "--inventory", "inventory_path", metavar="FILE", help="Only this inventory.")
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def history_cmd(db: str | None, inventory_path: str | None, limit: int, fmt: str) -> None:
    """List past scans, newest first: id, time, inventory, counts and exit code."""
    key = str(Path(inventory_path).expanduser().resolve()) if inventory_path else None
    with _open_history(db) as history:
        scans = history.scans(inventory=key, limit=limit)
    from agent.report.history_view import render_history, scan_document

    if fmt == "json":
        click.echo(json.dumps([scan_document(s) for s in scans], indent=2))
        return
    render_history(_table_console(), scans, history.path)


@cli.command("diff")
@click.argument("old", required=False, type=int)
@click.argument("new", required=False, type=int)
@_DB_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def diff_cmd(old: int | None, new: int | None, db: str | None, fmt: str) -> None:
    """Show what changed between two scans (ids from 'mfa-agent history').

    Without arguments: the last two scans of the inventory scanned last. With OLD only: from OLD
    to the latest scan of the same inventory. New failures, fixed, still failing, new errors,
    newly waived (FAIL → WAIVED), hosts added and removed.
    """
    with _open_history(db) as history:
        new_scan, old_scan = _pick_scans(history, old, new)
        delta = history.delta(
            old_scan, history.results(new_scan.id), history.host_names(new_scan.id)
        )
    from rich.console import Console

    from agent.report.history_view import delta_json, render_delta

    if fmt == "json":
        click.echo(delta_json(old_scan, new_scan, delta))
        return
    render_delta(Console(highlight=False, soft_wrap=True), old_scan, new_scan, delta)


def _pick_scans(
    history: History, old: int | None, new: int | None
) -> tuple[StoredScan, StoredScan]:
    """(new, old) scans for `diff`, or an InputError saying what is missing."""
    where = str(history.path)
    if new is not None:
        new_scan = history.scan(new)
    elif old is not None:
        first = history.scan(old)
        if first is None:
            raise InputError(Problem(where, f"no scan {old} in the history: nothing to compare"))
        new_scan = history.scans(inventory=first.inventory_key, limit=1)[0]
        if new_scan.id == old:
            raise InputError(
                Problem(where, f"scan {old} is the latest of its inventory: nothing to compare")
            )
    else:
        latest = history.scans(limit=1)
        new_scan = latest[0] if latest else None
    if new_scan is None:
        what = f"no scan {new} in the history" if new is not None else "no scans yet"
        raise InputError(Problem(where, what))
    old_scan = (
        history.scan(old)
        if old is not None
        else history.previous(new_scan.inventory_key, new_scan.scope, before=new_scan.id)
    )
    if old_scan is None:
        what = (
            f"no scan {old}"
            if old is not None
            else "only one scan of this inventory" + (" with this scope" if new_scan.scope else "")
        )
        raise InputError(Problem(where, f"{what} in the history: nothing to compare"))
    return new_scan, old_scan


@cli.command(
    "inventory",
    epilog="\b\nExit codes:\n  0  the inventory is valid\n"
    "  3  it is not, a referenced environment variable is unset, or a vault cannot be opened",
)
@_DEBUG_OPTION
@_inventory_options(required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def inventory_cmd(fmt: str) -> None:
    """Validate an inventory and show the resolved hosts, roles and connections (secrets masked).

    Exits 3 when the inventory is invalid, a referenced environment variable is unset, or a
    vault value it needs cannot be decrypted. Hosts without an MFA role are listed with a
    warning: a scan checks nothing on them.
    """
    from agent.report.inventory_view import inventory_document, render_inventory

    inventory = _load_given_inventory(_inventory_args())
    missing = inventory.missing_secrets()
    if fmt == "json":
        click.echo(json.dumps(inventory_document(inventory), indent=2))
    else:
        render_inventory(inventory, _table_console())
    if missing:
        _print_problems("referenced secrets are not set", missing)
        raise SystemExit(int(ExitCode.INVALID_INPUT))


@cli.command("checks")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def checks_cmd(fmt: str) -> None:
    """List the check catalogue: id, severity, roles, title and the guidance each enforces."""
    from agent.registry import load_catalogue
    from agent.report.catalogue_view import catalogue_document, render_catalogue

    catalogue = load_catalogue()
    if fmt == "json":
        click.echo(json.dumps(catalogue_document(catalogue), indent=2))
    else:
        render_catalogue(catalogue, _table_console())


def _fail(code: int) -> NoReturn:
    sys.stdout.flush()
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The command line (in-process: tests call it; `run` is the console script)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except SystemExit as exc:
        _fail(exc.code if isinstance(exc.code, int) else 0)
    except click.exceptions.Abort:
        _stderr().print("mfa-agent: interrupted", markup=False)
        _fail(INTERRUPTED)
    except click.ClickException as exc:  # usage errors: exit 3, not click's 2
        _print_problems("invalid arguments", [Problem("<arguments>", exc.format_message())])
        _fail(int(ExitCode.INVALID_INPUT))
    except InputError as exc:
        _print_problems("invalid input", exc.problems)
        _fail(int(exc.exit_code))
    except AgentError as exc:
        _stderr().print(f"mfa-agent: {exc}", markup=False)
        _fail(int(exc.exit_code))
    except KeyboardInterrupt:
        _stderr().print("mfa-agent: interrupted", markup=False)
        _fail(INTERRUPTED)
    except Exception as exc:
        if _state.debug:
            traceback.print_exc()
        _stderr().print(
            # Only the type: a library's message could carry a secret from its arguments.
            f"mfa-agent: internal error: {type(exc).__name__} "
            "(this is a bug; run with --debug for a traceback)",
            markup=False,
        )
        _fail(INTERNAL_ERROR)
    _fail(0)


#: Allocations between two young-generation collections (Python's default: 700).
GC_YOUNG_THRESHOLD = 30_000


def run() -> NoReturn:
    """The `mfa-agent` console script and `python -m agent`: `main`, then a quick exit.

    Once everything is written, tearing the interpreter down (freeing every object of a
    thousand hosts' facts and results) costs about 0.2 s and changes nothing, so the process
    runs the exit handlers, flushes its streams and ends. With a thread still running that
    would be waited for, it exits the normal way.

    The cyclic garbage collector runs less often (`GC_YOUNG_THRESHOLD`): a scan allocates
    millions of short-lived objects (replies, parsed XML, facts) that reference counting frees
    anyway, and Python's default (a young-generation pass every 700 allocations) spent about
    8 % of a 1,000-host scan's CPU on passes that found nothing to free.
    """
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    waited = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if waited:
        raise SystemExit(code)
    atexit._run_exitfuncs()  # what a normal exit runs: multiprocessing's, logging's
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)

