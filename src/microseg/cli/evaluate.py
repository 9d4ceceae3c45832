"""Evaluator commands: check, whatif, lint (issue: evaluator)."""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

import typer

from microseg.cli.app import COMPILE_AND_CHECK, app, demo_step
from microseg.cli.common import (
    ENGINE_HELP,
    JSON_OPTION_HELP,
    POLICY_HELP,
    SPARK_CONF_HELP,
    SPARK_MASTER_HELP,
    console,
    counted,
    emit_json,
    print_paragraph,
    resolve_policy,
    session_engine,
)
from microseg.model import MicrosegError

if TYPE_CHECKING:
    from rich.table import Table

    from microseg.evaluate.check import ConnectionCheck, GroupCheck
    from microseg.evaluate.engine import Decision

EXIT_BLOCKED = 3  # `check --exit-code`: the connection does not get through
EXIT_NOT_ENFORCED = 4  # `check --exit-code`: it gets through, but the policy never sees it
EXIT_REDIRECTED = 5  # `check --exit-code`: sent to a redirect target, which decides


@app.command(rich_help_panel=COMPILE_AND_CHECK)
def check(
    policy: str = typer.Argument(..., help=POLICY_HELP),
    source: str = typer.Option(
        ...,
        "--from",
        metavar="ADDRESS|GROUP",
        help="Client: an IPv4 or IPv6 address, or a group (answered for all its addresses).",
    ),
    destination: str = typer.Option(
        ..., "--to", metavar="ADDRESS|GROUP", help="Server: an address or a group."
    ),
    protocol: str = typer.Option("tcp", "--proto", help="tcp, udp, icmp, icmpv6 or a number."),
    port: str | None = typer.Option(
        None, "--port", help="Server port (tcp/udp): a number or an EOS name (ssh, www, domain)."
    ),
    icmp_type: str | None = typer.Option(
        None, "--icmp-type", help="ICMP type for icmp (default echo; the reply is echo-reply)."
    ),
    device: str | None = typer.Option(None, "--device", "-d", help="Only this device."),
    vrf: str = typer.Option("default", "--vrf", help="VRF the traffic is in."),
    exit_code: bool = typer.Option(
        False,
        "--exit-code",
        help=f"Exit {EXIT_BLOCKED} when the connection is dropped, {EXIT_NOT_ENFORCED} when it "
        f"is not enforced (stays on the host bridge), {EXIT_REDIRECTED} when it is redirected "
        "to a firewall; 0 when it connects.",
    ),
    json_output: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Can --from reach --to on a service, and which rule decides?

    Evaluates the request and the reply (from the server port to an ephemeral client port;
    ICMP echo is answered by echo-reply) on every device with a policy for the VRF.
    Exit 0 when evaluated (with --exit-code: 3 dropped, 4 not enforced, 5 redirected); 1 on
    bad input.

    Example: microseg check examples/home-lab.yaml --from 172.18.6.138 --to 10.100.99.51
    --proto tcp --port 22
    """
    from microseg.evaluate.check import check_connection, check_groups, is_address

    policy_set = resolve_policy(policy)
    if is_address(source) and is_address(destination):
        result = check_connection(
            policy_set, source, destination, protocol, port, icmp_type, vrf, device
        )
        checks = [result]
        if json_output:
            emit_json(result.as_dict())
        else:
            print_check(result)
    else:
        groups = check_groups(
            policy_set, source, destination, protocol, port, icmp_type, vrf, device
        )
        checks = [pair.check for pair in groups.pairs]
        if json_output:
            emit_json(groups.as_dict())
        else:
            print_group_check(groups)
    if exit_code:
        # SystemExit, not typer.Exit: click returns (drops) typer.Exit codes when
        # standalone_mode is off, as `microseg.cli.main` runs it. A group connects only if
        # every pair of its addresses does; the worst outcome decides the code.
        if any(not c.connects and c.bypass is None and not c.redirected for c in checks):
            raise SystemExit(EXIT_BLOCKED)
        if any(c.bypass is not None for c in checks):
            raise SystemExit(EXIT_NOT_ENFORCED)
        if any(c.redirected for c in checks):
            raise SystemExit(EXIT_REDIRECTED)


def print_group_check(result: GroupCheck) -> None:
    """One line per pair of address classes: outcome and the deciding match each way."""
    from rich.markup import escape

    from microseg.evaluate.check import outcome

    console.print(
        f"[bold]{escape(f'{result.source.label()} -> {result.destination.label()}')}[/] "
        + escape(f"{result.service}, VRF {result.vrf}")
    )
    styles = {"connects": "green", "dropped": "red"}
    for pair in result.pairs:
        pair_outcome = outcome(pair.check)
        style = styles.get(pair_outcome, "yellow")
        console.print(
            "  "
            + escape(f"{', '.join(pair.source.prefixes())} -> ")
            + escape(", ".join(pair.destination.prefixes()))
            + f"  [{style}]{escape(pair_outcome)}[/]"
        )
        for label, decisions in (
            ("request", pair.check.request_decisions),
            ("reply", pair.check.reply_decisions),
        ):
            decision = pair.check.deciding(decisions)
            if decision is not None:
                console.print(escape(f"      {label:8} {_decision_text(decision)}"))
        for mirror in pair.check.mirrors:
            console.print(escape(f"      mirrored: {mirror.describe()}"))
    style = "green" if result.connects else "red"
    console.print(f"[bold {style}]result: {escape(result.result)}[/]")


def _decision_text(decision: Decision) -> str:
    if decision.policy is None:
        return f"{decision.device}: no traffic policy for the VRF"
    match = decision.match if decision.rule is None else f"{decision.rule} (match {decision.match})"
    return f"{decision.device} {decision.policy}: {match}"


def print_check(result: ConnectionCheck) -> None:
    from rich.markup import escape

    console.print(
        f"[bold]{escape(f'{result.request.src} -> {result.request.dst}')}[/] "
        + escape(f"{result.service}, VRF {result.vrf}")
    )
    for label, packet, decisions in (
        ("request", result.request, result.request_decisions),
        ("reply", result.reply, result.reply_decisions),
    ):
        if not decisions:
            console.print(
                escape(f"  {label:8} {packet.describe()}: no device enforces a policy here")
            )
        for decision in decisions:
            style = "green" if decision.verdict == "forward" else "red"
            console.print(
                f"  {escape(f'{label:8} {packet.describe()}')}  [{style}]{decision.verdict}[/]  "
                + escape(_decision_text(decision))
            )
    for mirror in result.mirrors:
        console.print(escape(f"  mirrored: {mirror.describe()}"))
    if result.bypass is not None:
        would = "forward it" if result.policy_allows else f"drop it ({_blocked_by(result)})"
        console.print(f"[bold yellow]result: {escape(result.result)}[/]")
        console.print(escape(f"  why: {result.bypass.explanation()}"))
        console.print(escape(f"  if the switch saw it, the policy would {would}"))
        console.print(escape(f"  fix: {result.bypass.fix()}"))
        return
    style = "green" if result.connects else "red"
    console.print(f"[bold {style}]result: {escape(result.result)}[/]")


def _blocked_by(result: ConnectionCheck) -> str:
    blocking = result.blocking
    return "" if blocking is None else f"match {blocking.match}"


def check_table(rows: list[tuple[str, ConnectionCheck]]) -> Table:
    """A compact table of several checks (the demo's connectivity matrix)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for column in ("from", "to", "service", "result", "deciding match"):
        table.add_column(column, overflow="fold")
    for note, result in rows:
        if result.bypass is not None:
            style, outcome = "yellow", "not enforced"
        else:
            style, outcome = ("green", "connects") if result.connects else ("red", "dropped")
        blocking = result.blocking
        request = result.deciding(result.request_decisions)
        if blocking is not None:
            deciding = blocking.match
        elif request is not None and request.rule is not None:
            deciding = request.rule
        else:
            deciding = request.match if request else "-"
        table.add_row(
            escape(result.request.src),
            escape(result.request.dst),
            escape(result.service),
            f"[{style}]{outcome}{escape(note)}[/]",
            escape(deciding or "-"),
        )
    return table


@app.command(rich_help_panel=COMPILE_AND_CHECK)
def whatif(
    base: str = typer.Option(..., "--base", help="The policy in force. " + POLICY_HELP),
    candidate: str = typer.Option(..., "--candidate", help="The proposed policy. " + POLICY_HELP),
    sessions: str = typer.Option(
        ...,
        "--sessions",
        help="Sessions: a .csv, .jsonl or .parquet file (vrf, protocol, src, sport, dst, dport, "
        "packets, bytes) or a flow store directory.",
    ),
    device: str | None = typer.Option(None, "--device", "-d", help="Only this device."),
    json_output: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
    engine: str = typer.Option("duckdb", "--engine", help=ENGINE_HELP),
    spark_master: str | None = typer.Option(None, "--spark-master", help=SPARK_MASTER_HELP),
    spark_conf: list[str] = typer.Option([], "--spark-conf", help=SPARK_CONF_HELP),
) -> None:
    """Replay sessions against base and candidate: what would be newly blocked or allowed?

    Each session's request and reply are evaluated on every device; changes are grouped by
    the deciding rule and service, with counts and examples, plus per-rule hits under the
    candidate.

    Example: microseg whatif --base rev:3 --candidate ws:tighten --sessions sessions.parquet
    """
    from rich.markup import escape
    from rich.table import Table

    from microseg.evaluate.whatif import whatif_sessions

    base_policy, candidate_policy = resolve_policy(base), resolve_policy(candidate)
    with closing(session_engine(engine, spark_master, spark_conf)) as reader:
        report = whatif_sessions(base_policy, candidate_policy, sessions, reader, device)
    if json_output:
        emit_json(report)
        return
    console.print(
        f"replayed {counted(report['sessions'], 'session')} ({counted(report['rows'], 'row')})"
    )
    for key, title in (("newly_blocked", "newly blocked"), ("newly_allowed", "newly allowed")):
        change = report[key]
        if not change["groups"]:
            console.print(f"[bold]{title}:[/] none")
            continue
        style = "red" if key == "newly_blocked" else "green"
        console.print(
            f"[bold {style}]{title}:[/] {counted(change['sessions'], 'session')}, "
            f"{counted(change['packets'], 'packet')}, {counted(change['bytes'], 'byte')}"
        )
        for group in change["groups"]:
            console.print(
                escape(
                    f"  {group['service']}  {group['role']} {_label(group)}: "
                    f"{counted(group['sessions'], 'session')}, "
                    f"{counted(group['packets'], 'packet')}, {counted(group['bytes'], 'byte')}"
                )
            )
            for example in group["examples"]:
                console.print(
                    escape(
                        f"      e.g. {example['vrf']} {example['protocol']} {example['src']}:"
                        f"{example['sport']} -> {example['dst']}:{example['dport']}"
                    )
                )
    table = Table(title="rule hits under the candidate", show_edge=False, pad_edge=False)
    for column in ("device", "policy", "match", "sessions", "packets"):
        table.add_column(
            column,
            justify="right" if column in ("sessions", "packets") else "left",
            overflow="fold",
        )
    for hit in report["candidate_rule_hits"]:
        table.add_row(
            escape(hit["device"]),
            escape(hit["policy"] or "-"),
            escape(hit["match"] or "-"),
            str(hit["sessions"]),
            str(hit["packets"]),
        )
    console.print(table)


def _label(group: dict) -> str:
    if group["policy"] is None:
        return f"no policy on {group['device']}"
    return f"{group['match']} ({group['policy']} on {group['device']})"


@app.command(rich_help_panel=COMPILE_AND_CHECK)
def lint(
    policy: str = typer.Argument(..., help=POLICY_HELP),
    select: str | None = typer.Option(
        None, "--select", metavar="CHECK,...", help="Run only these checks (comma-separated)."
    ),
    ignore: str | None = typer.Option(
        None, "--ignore", metavar="CHECK,...", help="Skip these checks (comma-separated)."
    ),
    json_output: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Find dead, shadowed and redundant rules, nested prefixes, unused objects, switch
    bypass and hardware overruns.

    Checks: never-matches, shadowed, redundant, bypass, nested-prefix, unused, hardware.
    Exit 0 when clean, 1 with findings (each with a fix; a fix only suggests an edit lint
    has verified: removing a rule changes no verdict, no edit widens access).

    Example: microseg lint examples/home-lab.yaml --ignore unused
    """
    from microseg.evaluate.lint import lint as lint_policy

    if select is not None and not _check_names(select):
        raise MicrosegError(
            f"--select {select!r}: names no check (leave --select out to run every one)"
        )
    report = lint_policy(resolve_policy(policy), _check_names(select), _check_names(ignore))
    if json_output:
        emit_json(report)
    else:
        print_lint(report)
    if not report["clean"]:
        raise SystemExit(1)


def _check_names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def print_lint(report: dict) -> None:
    from rich.markup import escape

    from microseg.targets.target import NO_FIGURE_FOR_MODEL

    for finding in report["findings"]:
        console.print(
            f"[bold yellow]{finding['kind']}[/] "
            + escape(f"{finding['subject']}: {finding['message']}")
        )
        console.print(escape(f"    fix: {finding['fix']}"))
    if report["clean"]:
        console.print("[green]no findings[/]")
    else:
        console.print(counted(len(report["findings"]), "finding"))
    for row in report["hardware"]:
        budget = "no hardware limit" if row["budget"] is None else f"budget {row['budget']}"
        if row["budget_source"].startswith(NO_FIGURE_FOR_MODEL):
            budget += f" (no figure for {row['hardware']}: a generic planning figure)"
        console.print(
            escape(
                f"hardware: {row['device']} ({row['hardware'] or row['platform']}) needs about "
                f"{row['entries']} entries, {budget}"
            )
        )


# The seed's own connectivity observations (arista-mss-lab-blog.md), replayed by the demo.
SEED_CONNECTIONS = [
    ("172.18.6.138", "10.100.99.51", "tcp", 22),
    ("10.100.5.10", "10.100.99.50", "tcp", 22),
    ("172.18.6.138", "10.100.99.52", "tcp", 80),
    ("10.100.99.51", "10.100.99.50", "tcp", 4567),
    ("172.18.6.138", "10.100.99.50", "tcp", 4567),
    ("10.100.99.50", "8.8.8.8", "icmp", None),
    ("10.100.99.51", "8.8.8.8", "icmp", None),
    ("10.100.99.50", "10.100.1.7", "udp", 53),
    ("10.100.99.51", "10.100.99.50", "tcp", 22),
    ("10.100.99.51", "10.100.99.52", "tcp", 22),
    ("10.100.99.51", "10.100.99.52", "tcp", 80),
    ("10.100.99.52", "10.100.99.51", "tcp", 80),
]


def _without_isolation(policy_set, segment_name: str):
    """The lab before the seed isolated the hosts of a segment (a fresh PolicySet)."""
    from microseg.model import SECTIONS, PolicySet

    devices = tuple(
        device.model_copy(
            update={
                "segments": tuple(
                    s.model_copy(update={"hosts_isolated": False}) if s.name == segment_name else s
                    for s in device.segments
                )
            }
        )
        for device in policy_set.devices
    )
    fields = {section: getattr(policy_set, section) for section in SECTIONS}
    return PolicySet(**{**fields, "devices": devices})


@demo_step(40, "4. Can A reach B? The seed's connectivity table, and lint")
def _demo_check_and_lint(context) -> None:
    from microseg.compile.resolve import compile_all
    from microseg.evaluate.check import check_connection
    from microseg.evaluate.lint import lint as lint_policy
    from microseg.policyfile import load_policy

    name = "home-lab.yaml"
    policy_set = context.policies.get(name) or load_policy(context.examples / name)
    intents = compile_all(policy_set)
    rows = [("", check_connection(policy_set, *row, intents=intents)) for row in SEED_CONNECTIONS]
    before = _without_isolation(policy_set, "Vlan299")
    rows.append(
        (
            " *",
            check_connection(before, "10.100.99.51", "10.100.99.52", "tcp", 22),
        )
    )
    console.print(check_table(rows))
    bypass = rows[-1][1].bypass
    assert bypass is not None  # both ends sit in Vlan299, which is not isolated before the fix
    print_paragraph(f"* Vlan299 before isolation: {bypass.explanation()}.")
    print_paragraph(f"  fix: {bypass.fix()}", hanging="       ")
    console.print("[bold]microseg lint home-lab.yaml[/]")
    print_lint(lint_policy(policy_set))
