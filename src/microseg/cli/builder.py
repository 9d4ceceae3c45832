"""Policy builder commands: recommend (issue: policy builder)."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from microseg.cli.app import BUILDER, app, demo_step
from microseg.cli.common import (
    ENGINE_HELP,
    JSON_OPTION_HELP,
    POLICY_HELP,
    SPARK_CONF_HELP,
    SPARK_MASTER_HELP,
    TIME_HELP,
    console,
    counted,
    emit_json,
    resolve_policy,
    session_engine,
)
from microseg.model import MicrosegError

if TYPE_CHECKING:
    from microseg.builder import BuilderOptions, Recommendation, Scope
    from microseg.builder.proposal import SessionExample, StandingDecision
    from microseg.flows.engines import SessionEngine
    from microseg.model import PolicySet


@app.command("recommend", rich_help_panel=BUILDER)
def recommend_command(
    policy: str = typer.Argument(..., help=POLICY_HELP),
    sessions: Path | None = typer.Option(
        None, "--sessions", help="Sessions file: JSON lines, CSV or Parquet."
    ),
    store: Path | None = typer.Option(
        None,
        "--store",
        help="Flow store directory (default: $MICROSEG_FLOW_STORE or the user data dir).",
    ),
    categories: str | None = typer.Option(
        None,
        "--categories",
        help="Aggregate endpoints by groups carrying these categories (a,b): a rule then allows "
        "every address of such a group, seen or not (listed under 'Widened beyond what was "
        "seen').",
    ),
    monitor_rule: str | None = typer.Option(
        None, "--monitor-rule", help="Only sessions this rule matches (its groups, services, VRF)."
    ),
    policy_name: str | None = typer.Option(
        None,
        "--policy",
        help="Only sessions of this policy (its VRF; its monitor rules if any); the rules go here.",
    ),
    vrf: str | None = typer.Option(None, "--vrf", help="Only sessions in this VRF."),
    between: list[str] = typer.Option(
        [], "--between", help="Only sessions with an end in this prefix (repeatable)."
    ),
    since: str | None = typer.Option(
        None, "--since", help=f"Only sessions seen since: {TIME_HELP}."
    ),
    until: str | None = typer.Option(
        None, "--until", help=f"Only sessions seen until: {TIME_HELP}."
    ),
    min_share: float | None = typer.Option(
        None,
        "--min-share",
        help="Use a whole existing group when at least this share (0.5-1) of it was seen.",
    ),
    force_min_share: bool = typer.Option(
        False,
        "--force-min-share",
        help="Take a --min-share below 0.5 (groups used whole though most were never seen).",
    ),
    include_blocked: bool = typer.Option(
        False,
        "--include-blocked",
        help="Also propose rules for sessions nobody answered and for sessions an existing "
        "drop or redirect rule stops today, placed before that rule: this widens access.",
    ),
    into_workspace: str | None = typer.Option(
        None, "--into-workspace", help="Write the proposals into this store workspace."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="With --into-workspace: write even if a device goes over its hardware budget.",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
    engine: str = typer.Option("duckdb", "--engine", help=ENGINE_HELP),
    spark_master: str | None = typer.Option(None, "--spark-master", help=SPARK_MASTER_HELP),
    spark_conf: list[str] = typer.Option([], "--spark-conf", help=SPARK_CONF_HELP),
) -> None:
    """Recommend rules from collected sessions, with their evidence and measured quality.

    Example: microseg recommend examples/home-lab-dns-ntp.yaml --sessions examples/seed-lab-sessions.csv
    --categories clients,infrastructure
    """
    from rich.markup import escape

    from microseg.builder import BuilderOptions
    from microseg.builder.report import recommendation_json
    from microseg.builder.scope import scope_from
    from microseg.builder.workspace import check_budget, write_recommendation

    if sessions is not None and store is not None:
        raise MicrosegError("give the sessions with one of --sessions FILE or --store DIR")
    policy_set = resolve_policy(policy)
    options = BuilderOptions(
        categories=_names(categories),
        scope=scope_from(policy_set, monitor_rule, policy_name, vrf, between, since, until),
        min_share=min_share,
        force_min_share=force_min_share,
        include_blocked=include_blocked,
        target_policy=policy_name,
    )
    with closing(session_engine(engine, spark_master, spark_conf)) as reader:
        recommendation = _recommended(
            _sessions_source(sessions, store), reader, policy_set, options, vrf
        )
    written: list[tuple[str, str]] = []
    if into_workspace is not None:
        check_budget(recommendation, force)
        from microseg.store import open_store

        with open_store() as opened:
            written = write_recommendation(
                opened, policy, policy_set, into_workspace, recommendation
            )
    if as_json:
        data = recommendation_json(recommendation)
        if into_workspace is not None:
            data["workspace"] = {
                "name": into_workspace,
                "objects": [{"section": s, "name": n} for s, n in written],
            }
        emit_json(data)
        return
    print_recommendation(recommendation)
    if into_workspace is not None and not written:
        console.print(
            f"no proposals: nothing written into workspace {into_workspace}", markup=False
        )
    elif into_workspace is not None:
        console.print(
            f"wrote {len(written)} objects into workspace [bold]{escape(into_workspace)}[/]; "
            f"review with: microseg workspace build {escape(into_workspace)}"
        )


def _recommended(
    source: Path,
    engine: SessionEngine,
    policy_set: PolicySet,
    options: BuilderOptions,
    vrf: str | None,
) -> Recommendation:
    """The recommendation for a session file or a flow store. On a store with the Spark
    engine the builder's per-session step runs on the executors (`recommend_spark`); else
    the engine's rows come here and the builder runs on them."""
    from microseg.builder import recommend
    from microseg.flows.spark import SparkEngine

    if isinstance(engine, SparkEngine) and source.is_dir():
        from microseg.builder.recommend_spark import recommend_on_spark
        from microseg.flows.engines import SessionQuery
        from microseg.flows.flowstore import read_store

        filters = _fold_filters(source, policy_set, options.scope, vrf, options.categories)
        query = SessionQuery(**filters)
        return read_store(
            source,
            engine,
            lambda segments: recommend_on_spark(
                engine, segments, query, policy_set, options, str(source)
            ),
        )
    table = read_session_columns(source, engine, policy_set, options.scope, vrf, options.categories)
    return recommend(policy_set, table, options)


def read_session_columns(
    source: Path,
    engine: SessionEngine | None = None,
    policy_set: PolicySet | None = None,
    scope: Scope | None = None,
    vrf: str | None = None,
    categories: tuple[str, ...] = (),
):
    """Sessions from a flow store directory or a session file, checked row by row; `engine`
    runs the store's session query: the scan, the `eph` summary and, given the policy set,
    the builder's fold (`flows.engines.builder_rows`), its examples kept per address class
    (`builder.endpoints.address_classes`, from the `categories` and the scope). On a store, the scope's time window
    and `vrf` select in that query too, before the summary and the fold (the builder's scope
    applies them again: a no-op then). In a session file the builder's scope selects them,
    row by row, so a file with a time window is not folded (a fold spans times)."""
    from microseg.flows.flowstore import read_sessions
    from microseg.flows.session_columns import session_columns

    filters = _fold_filters(source, policy_set, scope, vrf, categories)
    return session_columns(read_sessions(source, engine=engine, **filters), where=str(source))


def _fold_filters(
    source: Path,
    policy_set: PolicySet | None,
    scope: Scope | None,
    vrf: str | None,
    categories: tuple[str, ...],
) -> dict:
    """`read_session_columns`'s query (keywords of `read_sessions` and `SessionQuery`)."""
    from microseg.builder.endpoints import address_classes
    from microseg.builder.scope import scope_prefixes
    from microseg.evaluate.cells import port_cuts

    filters: dict = {}
    window = scope is not None and (scope.since_ms, scope.until_ms) != (None, None)
    if source.is_dir() and scope is not None:
        filters.update(vrf=vrf, since=_moment(scope.since_ms), until=_moment(scope.until_ms))
    if policy_set is not None and (source.is_dir() or not window):
        filters["client_port_cuts"] = port_cuts(policy_set)
        filters["address_classes"] = address_classes(
            policy_set, categories, scope_prefixes(scope) if scope is not None else ()
        )
    return filters


def _moment(milliseconds: int | None) -> datetime | None:
    if milliseconds is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=milliseconds)


def _sessions_source(sessions: Path | None, store: Path | None) -> Path:
    """--sessions FILE, --store DIR, or else the default flow store, which must exist."""
    if sessions is not None:
        return sessions
    if store is not None:
        return store
    from microseg.flows.flowstore import default_store_dir

    default = default_store_dir()
    if not default.exists():
        raise MicrosegError(
            f"no sessions collected yet ({default} does not exist): run `microseg collect`, "
            "or give --sessions FILE or --store DIR (`microseg demo --keep lab` leaves a flow "
            "store in lab/flows)"
        )
    return default


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def print_recommendation(recommendation: Recommendation) -> None:
    """The review table: rules with evidence, new objects, attempts blocked, quality."""
    from rich.console import JustifyMethod
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    rules = Table(title=f"Recommended rules ({_target(recommendation)})", title_justify="left")
    for column in ("#", "sources", "destinations", "services", "sessions"):
        justify: JustifyMethod = "right" if column in ("#", "sessions") else "left"
        rules.add_column(column, justify=justify, overflow="fold")
    for number, item in enumerate(recommendation.rules, 1):
        rules.add_row(
            str(number),
            Text(", ".join(item.rule.sources)),
            Text(", ".join(item.rule.destinations)),
            Text(", ".join(item.rule.services)),
            str(item.evidence.sessions),
        )
    console.print(rules)
    for number, item in enumerate(recommendation.rules, 1):
        evidence = item.evidence
        console.print(
            f"  {number}. [bold]{escape(item.rule.name)}[/]: {counted(evidence.sessions, 'session')}, "
            f"{counted(evidence.bytes, 'byte')}, {evidence.first_seen} .. {evidence.last_seen}; "
            "server side by "
            + escape(", ".join(f"{k} ({v})" for k, v in evidence.server_side.items()))
        )
        if recommendation.target_policy is not None:
            where = f"before {item.before}" if item.before else "at the end"
            console.print(f"     placed {where}", markup=False)
        if item.current_decisions:
            console.print(
                "     today: "
                + ", ".join(
                    f"{d.verdict} by {d.rule or 'the default match'} ({d.sessions})"
                    for d in item.current_decisions
                ),
                markup=False,
            )
        for first in evidence.examples:
            console.print(f"     e.g. {_example_text(first)}", markup=False)
    widened = [(item.rule.name, w) for item in recommendation.rules for w in item.widened]
    if widened:
        console.print(
            "[bold]Widened beyond what was seen[/] (addresses no session came from or went to)"
        )
    for rule_name, widening in widened:
        console.print(
            f"  {rule_name}: group {widening.group} used whole ({widening.reason}): "
            f"{widening.observed_addresses} of {widening.group_addresses} addresses seen, "
            f"{widening.unseen_addresses} never seen",
            markup=False,
        )
    if recommendation.new_groups:
        console.print("[bold]New groups[/]")
        for group in recommendation.new_groups:
            prefixes = " ".join(str(p) for p in group.prefixes)
            excepts = " ".join(str(p) for p in group.except_prefixes)
            console.print(
                f"  {group.name}: {prefixes}" + (f" except {excepts}" if excepts else ""),
                markup=False,
            )
    if recommendation.new_services:
        console.print("[bold]New services[/]")
        for service in recommendation.new_services:
            ports = ",".join(str(p) for p in service.destination_ports)
            types = ",".join(str(t) for t in service.icmp_types)
            console.print(
                f"  {service.name}: {service.protocol} {ports or types or 'all'}", markup=False
            )
    _print_standing(
        "Already allowed by an existing rule (not proposed again)", recommendation.already_allowed
    )
    _print_standing(
        "Stopped by an existing rule today (not proposed; --include-blocked proposes them)",
        recommendation.blocked_by_rules,
    )
    if recommendation.unexplained is not None:
        unexplained = recommendation.unexplained
        console.print(
            f"[bold]Unexplained[/]: {counted(unexplained.sessions, 'session')} between addresses "
            "outside every known group and segment; no rule is proposed for them"
        )
        for first in unexplained.examples:
            console.print(f"     e.g. {_example_text(first)}", markup=False)
    if recommendation.blocked_attempts:
        blocked = Table(title="Attempts blocked (no reply; not proposed)", title_justify="left")
        for column in ("source", "destination", "service", "sessions", "seen", "today"):
            blocked.add_column(column, overflow="fold")
        for attempt in recommendation.blocked_attempts:
            blocked.add_row(
                Text(attempt.source),
                Text(attempt.destination),
                Text(attempt.service),
                str(attempt.sessions),
                f"{attempt.first_seen} .. {attempt.last_seen}",
                Text(attempt.stopped_by or "forwarded: no answer"),
            )
        console.print(blocked)
    print_quality(recommendation)


def _example_text(example: SessionExample) -> str:
    return (
        f"{example.client}:{example.client_port} -> {example.server}:{example.server_port} "
        f"{example.protocol}, {counted(example.sessions, 'session')}, {example.bytes} bytes, "
        f"{example.first_seen}"
    )


def _print_standing(title: str, decisions: tuple[StandingDecision, ...]) -> None:
    if not decisions:
        return
    console.print(f"[bold]{title}[/]")
    for decision in decisions:
        console.print(
            f"  {decision.verdict} by {decision.rule}: {counted(decision.sessions, 'session')}",
            markup=False,
        )
        for first in decision.examples:
            console.print(f"     e.g. {_example_text(first)}", markup=False)


def _target(recommendation: Recommendation) -> str:
    if recommendation.target_policy is None:
        return "no target policy"
    return f"for policy {recommendation.target_policy}"


def _unverified_text(quality) -> str:
    if not quality.unverified:
        return ""
    return "; not verified on " + ", ".join(u.device for u in quality.unverified)


def print_quality(recommendation: Recommendation) -> None:
    quality = recommendation.quality
    coverage = "not verified" if quality.coverage is None else f"{quality.coverage:.1%}"
    lines = "n/a" if quality.config_lines is None else str(quality.config_lines)
    console.print(
        f"[bold]Quality[/]: coverage {coverage} of {counted(quality.evidence_sessions, 'session')} "
        f"(of {recommendation.scoped_sessions} in scope{_unverified_text(quality)}), "
        f"{counted(quality.rules, 'rule')}, "
        f"{lines} EOS config lines added, over-permissiveness {quality.over_permissiveness:.2f} "
        f"({quality.allowed_combinations} host/service combinations allowed, "
        f"{quality.observed_combinations} observed)"
    )
    for use in quality.hardware:
        budget = "no hardware limit" if use.budget is None else f"budget {use.budget}"
        over = " — OVER BUDGET" if use.over_budget else ""
        console.print(
            f"  hardware: {use.device} {use.entries_before} -> {use.entries_after} entries "
            f"(+{use.entries_after - use.entries_before}), {budget}{over}",
            markup=False,
        )
    for note in quality.notes:
        console.print(f"  note: {note}", markup=False)


@demo_step(60, "6. Policy Builder: recommended rules from collected sessions")
def _demo_recommendations(context) -> None:
    """The seed's two scenarios on generated sessions, with and without categories."""
    from microseg.builder import BuilderOptions, Scope, recommend, rule_selector
    from microseg.builder.seed_sessions import (
        blocked_attempts,
        dns_ntp_sessions,
        web_app_sessions,
        write_jsonl,
    )
    from microseg.policyfile import load_policy

    categories = ("clients", "infrastructure")
    dns_ntp = load_policy(context.examples / "home-lab-dns-ntp.yaml")
    dns_file = write_jsonl(dns_ntp_sessions(), context.workdir / "dns-ntp-sessions.jsonl")
    web_app = load_policy(context.examples / "home-lab-monitor.yaml")
    web_file = write_jsonl(
        web_app_sessions() + blocked_attempts(), context.workdir / "web-app-sessions.jsonl"
    )
    scope = Scope(all_of=((rule_selector(web_app, "web-appserver-discovery"),),))
    runs = [
        ("DNS/NTP: 60 wifi clients -> 10.100.1.6/.7", dns_ntp, dns_file, Scope()),
        ("Web app: monitor rule web-appserver-discovery", web_app, web_file, scope),
    ]
    for title, policy_set, path, run_scope in runs:
        table = read_session_columns(path)
        plain = recommend(policy_set, table, BuilderOptions(scope=run_scope))
        grouped = recommend(
            policy_set, table, BuilderOptions(categories=categories, scope=run_scope)
        )
        console.print(f"[bold]{title}[/] ({path.name})")
        console.print(
            f"  without categories: {counted(plain.quality.rules, 'rule')}, "
            f"{plain.quality.config_lines} config lines added (a rule for every IP)"
        )
        console.print(f"  with categories {', '.join(categories)}:")
        print_recommendation(grouped)
