"""Bad policy files: every problem reported at once, each with file:line:column and object."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from microseg.model import PolicyError
from microseg.policyfile import load_policy

BASE = """\
categories:
  - name: clients
groups:
  - name: web
    prefixes: [10.0.0.0/24]
    categories: [clients]
services:
  - name: HTTP
    protocol: tcp
    destination_ports: [80]
"""


def problems_of(tmp_path: Path, text: str, name: str = "policy.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    return [str(p) for p in raised.value.problems]


def test_unknown_reference_names_rule_field_and_line(tmp_path):
    problems = problems_of(
        tmp_path,
        BASE
        + "rules:\n  - name: r1\n    sources: [web]\n    destinations: [db]\n    services: any\n",
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:14:20: rule 'r1' destinations.0: unknown group 'db'"
    ]


def test_duplicate_name_points_at_the_second_definition(tmp_path):
    problems = problems_of(tmp_path, BASE + "  - name: HTTP\n    protocol: tcp\n")
    assert problems == [
        f"{tmp_path}/policy.yaml:11:11: service 'HTTP' name: duplicate name: defined 2 times"
    ]


def test_invalid_prefix(tmp_path):
    problems = problems_of(tmp_path, "groups:\n  - name: g\n    prefixes: [10.0.0.300/24]\n")
    assert problems == [
        f"{tmp_path}/policy.yaml:3:16: group 'g' prefixes.0: '10.0.0.300/24' is not a valid IPv4 or IPv6 prefix"
    ]


def test_prefix_with_host_bits_set_suggests_the_network(tmp_path):
    problems = problems_of(
        tmp_path, "groups:\n  - name: g\n    prefixes:\n      - 10.100.99.51/24\n"
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:4:9: group 'g' prefixes.0: 10.100.99.51/24 has host bits set "
        "(did you mean 10.100.99.0/24?)"
    ]


def test_port_out_of_range_and_unknown_port_name_together(tmp_path):
    problems = problems_of(
        tmp_path,
        "services:\n  - name: s\n    protocol: udp\n    destination_ports: [70000, dommain]\n",
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:4:24: service 's' destination_ports: port 70000 is out of range 0-65535; "
        "unknown udp port name 'dommain'"
    ]


def test_wrong_type(tmp_path):
    problems = problems_of(tmp_path, "groups:\n  - name: g\n    prefixes: 10.0.0.0/8\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path}/policy.yaml:3:15: group 'g' prefixes:")


def test_unknown_key_is_an_error_not_dropped(tmp_path):
    problems = problems_of(tmp_path, "groups:\n  - name: g\n    prefixs: [10.0.0.0/8]\n")
    assert problems == [
        f"{tmp_path}/policy.yaml:3:5: group 'g' prefixs: unknown key (not a field of this object)"
    ]


def test_unknown_section(tmp_path):
    problems = problems_of(tmp_path, "group:\n  - name: g\n")
    assert problems[0].startswith(f"{tmp_path}/policy.yaml:1:1: unknown section 'group'")


def test_yaml_syntax_error_has_a_line(tmp_path):
    problems = problems_of(tmp_path, "groups:\n  - name: g\n    prefixes: [10.0.0.0/8\n")
    assert problems[0].startswith(f"{tmp_path}/policy.yaml:")
    assert "invalid YAML" in problems[0]


def test_duplicate_yaml_key_is_an_error(tmp_path):
    problems = problems_of(tmp_path, "groups:\n  - name: g\n    name: h\n")
    assert "invalid YAML" in problems[0] and ":3:" in problems[0]


def test_every_problem_is_reported_at_once(tmp_path):
    problems = problems_of(
        tmp_path,
        """\
        groups:
          - name: g
            prefixes: [10.0.0.300/24]
            colour: blue
        services:
          - name: s
            protocol: tcpx
        rules:
          - name: r
            sources: [nothere]
            destinations: any
            services: any
            action: redirect
        policies:
          - name: p
            id: 1
            domain: nowhere
            rules: [r, ghost]
        """,
    )
    assert len(problems) == 7, problems
    joined = "\n".join(problems)
    for expected in (
        "group 'g' prefixes.0",
        "group 'g' colour: unknown key",
        "service 's' protocol",
        "rule 'r': action redirect needs a redirect object",
        "policy 'p' domain: unknown domain 'nowhere'",
        "policy 'p' rules.1: unknown rule 'ghost'",
    ):
        assert expected in joined


def test_policy_vrf_must_belong_to_its_domain(tmp_path):
    problems = problems_of(
        tmp_path,
        """\
        devices:
          - name: sw1
        domains:
          - name: d
            devices: [sw1]
            vrfs: [default]
        policies:
          - name: p
            id: 7
            domain: d
            vrf: RED
        """,
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:11:10: policy 'p' vrf: VRF 'RED' is not in domain 'd' (its VRFs: default; or use ALL)"
    ]


def test_directory_is_merged_and_errors_name_the_right_file(tmp_path):
    (tmp_path / "objects.yaml").write_text(BASE)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "web.yaml").write_text(
        "rules:\n  - name: r\n    sources: [web, ghost]\n    destinations: any\n    services: any\n"
    )
    with pytest.raises(PolicyError) as raised:
        load_policy(tmp_path)
    assert [str(p) for p in raised.value.problems] == [
        f"{tmp_path}/rules/web.yaml:3:20: rule 'r' sources.1: unknown group 'ghost'"
    ]


def test_directory_merge_resolves_references_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text(
        "rules:\n  - name: r\n    sources: [web]\n    destinations: any\n    services: [HTTP]\n"
    )
    policy_set = load_policy(tmp_path)
    assert policy_set.rule("r").sources == ("web",)


def test_missing_path(tmp_path):
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(tmp_path / "nope.yaml")


def test_a_name_with_a_line_separator_is_located(tmp_path):
    # YAML would fold U+2028 into a line break: the name could not be dumped and read back.
    problems = problems_of(
        tmp_path,
        BASE
        + 'rules:\n  - name: "r\\u2028one"\n    sources: any\n    destinations: any\n    services: any\n',
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:12:11: rule 'r\u2028one' name: 'r\\u2028one': a name may not "
        "contain control characters or line separators"
    ]


def test_a_missing_field_is_named_even_inside_a_nested_object(tmp_path):
    # The path can only go as deep as the document does: the message must name the field.
    problems = problems_of(
        tmp_path,
        "devices:\n  - name: leaf1\n    segments:\n      - vlan: 30\n"
        "monitor_nodes:\n  - name: ztx1\n",
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:4:9: device 'leaf1' segments.0: required field 'name' is missing",
        f"{tmp_path}/policy.yaml:6:5: monitor node 'ztx1': "
        "required field 'loopback_address' is missing",
    ]


def test_every_missing_field_of_an_object_is_reported(tmp_path):
    problems = problems_of(tmp_path, "redirect_objects:\n  - description: no name, no hops\n")
    assert problems == [
        f"{tmp_path}/policy.yaml:2:5: redirect object '#1': required field 'name' is missing",
        f"{tmp_path}/policy.yaml:2:5: redirect object '#1': required field 'next_hops' is missing",
    ]


def test_aliases_that_expand_exponentially_are_refused(tmp_path):
    # "Billion laughs": 9 levels of 9 aliases are 387 million values once expanded; the
    # loader must refuse them (promptly, and without the memory) rather than expand them.
    levels = ["  - name: g0\n    prefixes: &a0 [" + ", ".join(["10.0.0.0/8"] * 9) + "]\n"]
    for level in range(1, 9):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        levels.append(f"  - name: g{level}\n    categories: &a{level} [{aliases}]\n")
    problems = problems_of(tmp_path, "groups:\n" + "".join(levels))
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path}/policy.yaml: the YAML aliases expand to more than")


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}")])
@pytest.mark.parametrize(
    "depth, message",
    [
        (600, "invalid YAML: nested too deeply (more than 64 levels)"),  # our limit
        (
            20_000,
            "invalid YAML: while increasing flow level, exceeded maximum nesting depth",
        ),  # libyaml's own limit
    ],
)
def test_collections_nested_too_deeply_are_a_problem_not_a_crash(
    tmp_path, opening, closing, depth, message
):
    problems = problems_of(
        tmp_path, "groups:\n  - name: g\n    categories: " + opening * depth + closing * depth
    )
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path}/policy.yaml:3:")
    assert problems[0].endswith(message)


def test_a_directory_policy_leaves_out_hidden_files_and_directories(tmp_path):
    # A policy repository's root holds `.pre-commit-config.yaml`, `.github/workflows/*.yml`:
    # they are not policy files.
    (tmp_path / "groups.yaml").write_text("groups:\n  - name: web\n    prefixes: [10.0.0.0/24]\n")
    (tmp_path / ".pre-commit-config.yaml").write_text("repos: []\n")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text("on: push\njobs: {}\n")
    (tmp_path / "site" / ".old").mkdir(parents=True)
    (tmp_path / "site" / ".old" / "groups.yaml").write_text("groups:\n  - name: web\n")
    (tmp_path / "site" / "rules.yaml").write_text(
        "rules:\n  - name: r\n    sources: [web]\n    destinations: any\n    services: any\n"
    )
    policy = load_policy(tmp_path)
    assert [g.name for g in policy.groups] == ["web"] and [r.name for r in policy.rules] == ["r"]


def test_a_device_segment_name_or_vlan_given_twice_is_located(tmp_path):
    problems = problems_of(
        tmp_path,
        """\
        devices:
          - name: leaf1
            segments:
              - name: Vlan10
                vlan: 10
              - name: Vlan20
                vlan: 10
              - name: Vlan10
        """,
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:7:15: device 'leaf1' segments.1.vlan: "
        "VLAN 10 is also segment 'Vlan10'",
        f"{tmp_path}/policy.yaml:8:15: device 'leaf1' segments.2.name: "
        "segment name 'Vlan10' is given twice",
    ]


def test_a_rule_listed_twice_in_a_policy_is_located_at_its_second_listing(tmp_path):
    # validate said "valid" and compile failed with "rules 'deny' and 'deny' both produce
    # match 'deny'; rename one of them": there was nothing to rename.
    problems = problems_of(
        tmp_path,
        BASE
        + """\
domains:
  - name: d
rules:
  - {name: deny, sources: any, destinations: any, services: any, action: drop}
  - {name: web, sources: any, destinations: [web], services: [HTTP]}
policies:
  - {name: p, id: 5, domain: d, rules: [deny, web, deny]}
""",
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:17:52: policy 'p' rules.2: rule 'deny' is listed twice "
        "(also rules.0): a policy lists each rule once"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "groups: []\n---\nrules: []\n",
            "policy.yaml:2:1: invalid YAML: expected a single document in the stream, but "
            "found another document",
        ),
        (
            "groups: [a, b\n",
            "policy.yaml:2:1: invalid YAML: while parsing a flow sequence, did not find "
            "expected ',' or ']'",
        ),
    ],
)
def test_a_yaml_syntax_error_says_what_was_expected_and_what_was_found(tmp_path, text, message):
    assert problems_of(tmp_path, text) == [f"{tmp_path}/{message}"]


def test_merge_keys_share_fields_and_written_keys_win(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "services:\n"
        "  - &web {name: HTTP, protocol: tcp, destination_ports: [80]}\n"
        "  - <<: *web\n"
        "    name: HTTP-alt\n"
        "    destination_ports: [8080]\n"
    )
    policy_set = load_policy(path)
    assert policy_set.service("HTTP-alt").protocol == "tcp"
    assert policy_set.service("HTTP-alt").destination_ports == (8080,)


def test_duplicate_key_is_located_at_the_second_key(tmp_path):
    problems = problems_of(tmp_path, "groups:\n  - name: g\n    prefixes: []\n    name: h\n")
    assert problems == [f"{tmp_path}/policy.yaml:4:5: invalid YAML: found duplicate key 'name'"]


def test_an_empty_list_is_not_any_and_is_located(tmp_path):
    # `sources: []` used to load as `any`: an allow rule then allowed every source.
    problems = problems_of(
        tmp_path,
        BASE
        + "rules:\n"
        + "  - name: r1\n    sources: []\n    destinations: [web]\n    services: [HTTP]\n"
        + "  - name: r2\n    sources: any\n    destinations: [web]\n    services:\n",
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:13:14: rule 'r1' sources: an empty list is not `any`: "
        "write `any` to match everything, or names",
        f"{tmp_path}/policy.yaml:19:14: rule 'r2' services: no value is not `any`: "
        "write `any` to match everything, or names",
    ]


def test_a_rule_without_sources_destinations_or_services_is_located(tmp_path):
    problems = problems_of(tmp_path, BASE + "rules:\n  - name: r1\n    services: [HTTP]\n")
    assert problems == [
        f"{tmp_path}/policy.yaml:12:5: rule 'r1': required field 'destinations' is missing",
        f"{tmp_path}/policy.yaml:12:5: rule 'r1': required field 'sources' is missing",
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("policies:\n  - {name: p, id: true, domain: d}\n", "2:19: policy 'p' id"),
        (
            "services:\n  - {name: s, protocol: tcp, destination_ports: [true]}\n",
            "2:50: service 's' destination_ports.0",
        ),
        (
            "services:\n  - {name: s, protocol: icmp, icmp_types: [false]}\n",
            "2:44: service 's' icmp_types.0",
        ),
        (
            "devices:\n  - {name: d, segments: [{name: v, vlan: true}]}\n",
            "2:42: device 'd' segments.0.vlan",
        ),
        ("devices:\n  - {name: d, monitor_tunnel: true}\n", "2:31: device 'd' monitor_tunnel"),
        (
            "monitor_nodes:\n  - {name: m, loopback_address: 10.0.0.1, collector_port: true}\n",
            "2:59: monitor node 'm' collector_port",
        ),
        ("devices:\n  - {name: d, management_port: true}\n", "2:32: device 'd' management_port"),
        (
            "monitor_objects:\n  - {name: m, tunnel_destination: 10.0.0.1, active_timeout_ms: true}\n",
            "2:64: monitor object 'm' active_timeout_ms",
        ),
    ],
)
def test_a_boolean_is_not_a_number(tmp_path, text, where):
    # `id: true` used to be stored as policy id 1, `vlan: true` as VLAN 1.
    problems = problems_of(tmp_path, text)
    assert f"{tmp_path}/policy.yaml:{where}: expected a whole number, got " in "\n".join(problems)


def test_a_scoped_ipv6_address_is_refused_where_it_is_written(tmp_path):
    # `fe80::1%eth0/128` was rendered into EOS, silently stripped by nftables, and under
    # `::/0` as an except-prefix made the nftables compile exit 70.
    problems = problems_of(
        tmp_path,
        'groups:\n  - {name: h, prefixes: ["::/0"], except_prefixes: ["fe80::1%eth0/128"]}\n'
        'monitor_nodes:\n  - {name: m, loopback_address: "fe80::2%lo"}\n',
    )
    assert problems == [
        f"{tmp_path}/policy.yaml:2:53: group 'h' except_prefixes.0: 'fe80::1%eth0/128': a "
        "scoped IPv6 address (zone %eth0) cannot be matched by a switch; remove the zone",
        f"{tmp_path}/policy.yaml:4:33: monitor node 'm' loopback_address: 'fe80::2%lo': a "
        "scoped IPv6 address (zone %lo) cannot be matched by a switch; remove the zone",
    ]


def test_numbers_past_pythons_digit_limit_are_located_problems(tmp_path):
    # int() refuses more than 4,300 digits: the loader used to exit 70 on `id: 999...`.
    huge = "9" * 5000
    assert problems_of(tmp_path, f"policies:\n  - {{name: p, id: {huge}, domain: d}}\n") == [
        f"{tmp_path}/policy.yaml:2:19: a number of 5000 characters is longer than any field takes"
    ]
    problems = problems_of(
        tmp_path,
        f'services:\n  - {{name: s, protocol: tcp, destination_ports: ["{huge}"]}}\n'
        f'  - {{name: r, protocol: tcp, source_ports: ["1-{huge}"]}}\n'
        f'  - {{name: i, protocol: icmp, icmp_types: ["{huge}"]}}\n',
    )
    assert [p.split(": ", 2)[1:] for p in problems] == [
        ["service 's' destination_ports", f"port {huge[:17]}... is out of range 0-65535"],
        ["service 'r' source_ports", f"port {huge[:17]}... is out of range 0-65535"],
        # (raised by the object's own check, so located at the object)
        ["service 'i'", f"unknown icmp type '{huge[:56]}..."],
    ]


def test_a_single_name_where_a_list_is_expected_is_an_error_at_its_line(tmp_path):
    # The format has no scalar shorthand: `sources: web` is refused like any other type
    # error, at the value, naming the field. Only the words `any` and `all` stand alone.
    problems = problems_of(
        tmp_path,
        "categories: [{name: clients}]\n"
        "devices: [{name: leaf1}]\n"
        "groups:\n"
        "  - name: web\n"
        "    prefixes: 10.0.0.0/24\n"
        "    except_prefixes: [10.0.0.128/25]\n"
        "    categories: clients\n"
        "services:\n"
        "  - name: HTTP\n"
        "    protocol: tcp\n"
        "    destination_ports: 80\n"
        "    source_ports: all\n"
        "  - name: ping\n"
        "    protocol: icmp\n"
        "    icmp_types: 8\n"
        "rules:\n"
        "  - name: r1\n"
        "    sources: web\n"
        "    destinations: any\n"
        "    services: HTTP\n"
        "policies:\n"
        "  - name: p\n"
        "    id: 1\n"
        "    domain: d\n"
        "    rules: r1\n"
        "domains:\n"
        "  - name: d\n"
        "    devices: leaf1\n"
        "redirect_objects:\n"
        "  - name: fw\n"
        "    next_hops: 10.0.0.1\n",
    )
    file = f"{tmp_path}/policy.yaml"
    assert problems == [
        f"{file}:5:15: group 'web' prefixes: expected a list, got '10.0.0.0/24'",
        f"{file}:7:17: group 'web' categories: expected a list, got 'clients'",
        f"{file}:11:24: service 'HTTP' destination_ports: expected a list (or `all`), got 80: "
        "write [80]",
        f"{file}:15:17: service 'ping' icmp_types: expected a list, got 8",
        f"{file}:18:14: rule 'r1' sources: expected a list (or `any`), got 'web': write [web]",
        f"{file}:20:15: rule 'r1' services: expected a list (or `any`), got 'HTTP': write [HTTP]",
        f"{file}:25:12: policy 'p' rules: expected a list, got 'r1'",
        f"{file}:28:14: domain 'd' devices: expected a list, got 'leaf1'",
        f"{file}:31:16: redirect object 'fw' next_hops: expected a list, got '10.0.0.1'",
    ]


@pytest.mark.parametrize(("written", "what"), [("", "no value"), (" []", "an empty list")])
def test_every_port_is_said_with_all_never_by_an_empty_list(tmp_path, written, what):
    # As for a rule's `any`: a service on "no port" read as every port would widen a rule.
    problems = problems_of(
        tmp_path, f"services:\n  - name: s\n    protocol: tcp\n    destination_ports:{written}\n"
    )
    (problem,) = problems
    assert problem.endswith(
        f"service 's' destination_ports: {what} is not `all`: write `all` for every port, "
        "or list ports"
    )
    assert problem.startswith(f"{tmp_path}/policy.yaml:4:")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # libyaml: "found character that cannot start any token", not which one
        ("groups:\n\t- name: g\n", "2:1: invalid YAML: while scanning for the next token, found "
         "character that cannot start any token (a tab: YAML indents with spaces only)"),
        # libyaml names it itself: said once
        ("groups:\n  - name: g\n\tprefixes: [10.0.0.0/8]\n", "3:1: invalid YAML: while scanning a "
         "plain scalar, found a tab character that violates indentation"),
    ],
)  # fmt: skip
def test_a_tab_in_the_indentation_is_said_to_be_one(tmp_path, text, said):
    # YAML 1.2, 6.1: "tab characters must not be used in indentation"
    path = tmp_path / "policy.yaml"
    path.write_text(text)  # (not dedented: the tab is the point)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert [str(p) for p in raised.value.problems] == [f"{path}:{said}"]
