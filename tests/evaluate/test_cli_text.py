"""Human output prints user text literally: IPv6 endpoints and names with brackets are not
taken for rich markup."""

from __future__ import annotations

from pathlib import Path

POLICY = """\
devices:
  - name: leaf1
    segments:
      - {name: Vlan10, vlan: 10, subnets: ["fd00:1::/64"]}
domains:
  - {name: dc, devices: [leaf1]}
groups:
  - {name: "hosts[bold]", prefixes: ["fd00::/16"]}
rules:
  - name: "drop[red]x"
    sources: ["hosts[bold]"]
    destinations: ["hosts[bold]"]
    services: any
    action: drop
policies:
  - {name: p, id: 1, domain: dc, rules: ["drop[red]x"]}
"""


def _policy(tmp_path: Path) -> str:
    path = tmp_path / "brackets.yaml"
    path.write_text(POLICY)
    return str(path)


def test_check_prints_ipv6_endpoints_and_bracketed_names(run_cli, tmp_path):
    args = ("--from", "fd00:1::5", "--to", "fd00:2::6", "--proto", "tcp", "--port", "22")
    result = run_cli("check", _policy(tmp_path), *args)
    assert result.exit_code == 0, result.stderr
    assert "[fd00:1::5]:49152 -> [fd00:2::6]:22" in result.stdout
    assert "drop[red]x (match drop[red]x-ipv6)" in result.stdout


def test_lint_prints_bracketed_names(run_cli, tmp_path):
    result = run_cli("lint", _policy(tmp_path))
    assert result.exit_code == 1
    assert "rule 'drop[red]x'" in result.stdout
    # The rule's reverse is itself (hosts to hosts, any service): one match, no `-reverse`
    # for lint to call shadowed; the bypass finding still prints the name literally.
    assert "rule drop[red]x (drop) covers traffic" in result.stdout
