"""Compiler commands: compile, diff, workspace build (issue: compiler)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from microseg.cli.app import COMPILE_AND_CHECK, app, demo_step
from microseg.cli.common import (
    JSON_OPTION_HELP,
    POLICY_HELP,
    console,
    counted,
    emit_json,
    is_standard_output,
    output_name,
    output_option,
    resolve_policy,
    status_console,
    write_output,
)
from microseg.cli.demo import DemoContext
from microseg.cli.store import workspace_app
from microseg.model import MicrosegError

if TYPE_CHECKING:
    from microseg.compile.diff import DeviceDiff
    from microseg.targets.eos.monitor_node import Collector


def parse_collector(text: str | None) -> Collector | None:
    """`ADDRESS` or `ADDRESS:PORT` / `[IPv6]:PORT` (port defaults to IPFIX's 4739)."""
    from microseg.targets.eos.monitor_node import Collector

    if text is None:
        return None
    address, port = text, "4739"
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif text.count(":") == 1:
        address, port = text.split(":")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise MicrosegError(f"--collector {text!r}: {address!r} is not an IP address") from None
    if not (port.isascii() and port.isdigit() and len(port) <= 5) or not 1 <= int(port) <= 65535:
        raise MicrosegError(f"--collector {text!r}: port {port!r} is not 1-65535")
    return Collector(parsed, int(port))


@app.command("compile", rich_help_panel=COMPILE_AND_CHECK)
def compile_command(
    policy: str = typer.Argument(..., help=POLICY_HELP),
    device: str = typer.Option(
        ..., "--device", "-d", help="A device (switch) or monitor node to compile for."
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        "-t",
        help="A target: eos, nftables or an installed plug-in (default: the device's platform).",
    ),
    output: str | None = output_option(
        "--output", "-o", help_text="Write the configuration to FILE (atomically) instead."
    ),
    collector: str | None = typer.Option(
        None,
        "--collector",
        help="IPFIX collector ADDRESS[:PORT] a monitor node exports to "
        "(default: the node's collector_address/collector_port).",
    ),
    omit_mirror: bool = typer.Option(
        False,
        "--omit-mirror",
        help="On a target that cannot mirror (nftables): render monitored rules without "
        "mirroring (the verdicts are unchanged).",
    ),
    json_output: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Compile a policy into one device's configuration.

    Example: microseg compile examples/home-lab.yaml --device andreasm-720xp-home
    """
    from microseg.targets import registry
    from microseg.targets.render import render_config

    if target is not None and target not in registry.names():
        raise MicrosegError(f"--target {target!r}: choose one of {', '.join(registry.names())}")
    if json_output and is_standard_output(output):
        raise MicrosegError("--output - and --json both write to standard output: give one")
    policy_set = resolve_policy(policy)
    config, used_target = render_config(
        policy_set,
        device,
        target,
        collector=parse_collector(collector),
        omit_mirror=omit_mirror,
    )
    if output is not None:
        source = None if policy.startswith(("rev:", "ws:")) else Path(policy)
        write_output(output, config, reads=("policy file", source))
    if json_output:
        emit_json({"device": device, "target": used_target, "config": config})
    elif output is None:
        sys.stdout.write(config)
    else:
        status_console(output).print(
            f"wrote {used_target} configuration of {device} to {output_name(output)}",
            markup=False,
        )


def print_diffs(diffs: list[DeviceDiff], json_output: bool, **extra: object) -> None:
    """Changed devices' diffs and the summary, or all of it as JSON."""
    from microseg.compile.diff import summary

    if json_output:
        emit_json({**extra, "devices": [d.as_json() for d in diffs], "summary": summary(diffs)})
        return
    for device_diff in diffs:
        if device_diff.changed:
            sys.stdout.write(device_diff.text)
    totals = summary(diffs)
    changed = ", ".join(f"{d.device} (+{d.added} -{d.removed})" for d in diffs if d.changed)
    console.print(
        f"{counted(totals['devices_changed'], 'device')} changed, "
        f"{counted(totals['lines_added'], 'line')} added, "
        f"{totals['lines_removed']} removed" + (f": {changed}" if changed else ""),
        markup=False,
    )


@app.command("diff", rich_help_panel=COMPILE_AND_CHECK)
def diff_command(
    old: str = typer.Argument(..., help="The policy before. " + POLICY_HELP),
    new: str = typer.Argument(..., help="The policy after. " + POLICY_HELP),
    devices: list[str] | None = typer.Option(
        None, "--device", "-d", help="Only this device (repeatable; default: every device)."
    ),
    json_output: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Per-device, section-aware unified diff of the compiled configuration.

    Example: microseg diff examples/home-lab-dns-ntp.yaml examples/home-lab.yaml
    """
    from microseg.targets.render import check_configured, diff_policies

    old_set, new_set = resolve_policy(old), resolve_policy(new)
    check_configured(old_set, new_set, devices)
    diffs = diff_policies(old_set, new_set, devices or None, old, new)
    print_diffs(diffs, json_output, old=old, new=new)


@workspace_app.command("build")
def workspace_build(
    name: str = typer.Argument(..., help="Workspace name."),
    json_output: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Compile every device the workspace changes, against its base revision, and show the
    per-device summary and diffs (what a change review shows before submitting).

    Example: microseg workspace build add-monitoring
    """
    from microseg.store import open_store
    from microseg.targets.render import diff_policies

    with open_store(create=False) as store:
        base = store.workspace_base(name)
        old_set, new_set = store.revision_policy(base), store.workspace_policy(name)
    diffs = diff_policies(old_set, new_set, None, f"rev:{base}", f"ws:{name}")
    affected = [d for d in diffs if d.changed]
    print_diffs(affected, json_output, workspace=name, base=base)


@demo_step(30, "3. Compile the seed lab")
def _demo_compile(context: DemoContext) -> None:
    from microseg.compile import compile_all
    from microseg.policyfile import load_policy
    from microseg.targets.render import diff_policies, render_config

    final = context.policies.get("home-lab.yaml") or load_policy(context.examples / "home-lab.yaml")
    monitor = context.policies.get("home-lab-monitor.yaml") or load_policy(
        context.examples / "home-lab-monitor.yaml"
    )
    first = context.policies.get("home-lab-dns-ntp.yaml") or load_policy(
        context.examples / "home-lab-dns-ntp.yaml"
    )
    switch, node = "andreasm-720xp-home", "andreas-ztx1"
    console.print(f"[bold]{switch}[/] compiled from home-lab.yaml (the seed's final state):")
    sys.stdout.write(render_config(final, switch, None, compile_all(final))[0])
    console.print(f"[bold]{node}[/] (monitor node) from home-lab-monitor.yaml:")
    sys.stdout.write(render_config(monitor, node, None, compile_all(monitor))[0])
    console.print(f"[bold]{switch}[/]: home-lab-dns-ntp.yaml -> home-lab.yaml")
    print_diffs(
        diff_policies(first, final, [switch], "home-lab-dns-ntp.yaml", "home-lab.yaml"), False
    )
