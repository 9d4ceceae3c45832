"""Bad input: each a clear error naming the object, exit code 1, and no output file."""

from __future__ import annotations

import textwrap

import pytest
from tests.compile.test_eos_features import BASE

DEVICE = "leaf1"


def write_policy(tmp_path, extra: str):
    path = tmp_path / "policy.yaml"
    path.write_text(BASE + textwrap.dedent(extra))
    return path


POLICY = """
policies:
  - {{name: p1, id: 7, domain: dc, vrf: {vrf}, rules: [{rules}]}}
"""


@pytest.mark.parametrize(
    ("extra", "device", "message"),
    [
        (
            "devices:\n  - name: lonely\n",
            "lonely",
            "device 'lonely' is in no security domain",
        ),
        ("", "nosuch", "device 'nosuch' is not defined"),
        (
            "rules:\n  - {name: r, sources: [v6only], services: [PING], destinations: any}\n"
            + POLICY.format(vrf="ALL", rules="r"),
            DEVICE,
            "rule 'r': its groups and services share no address family",
        ),
        (
            "rules:\n  - {name: r, sources: [v6only], destinations: [v4only], services: any}\n"
            + POLICY.format(vrf="ALL", rules="r"),
            DEVICE,
            "rule 'r': sources and destinations share no address family",
        ),
        (
            "rules:\n  - {name: 'has space', sources: [v4only], destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="'has space'"),
            DEVICE,
            "match 'has space': EOS names are one word",
        ),
        (
            "rules:\n  - {name: "
            + "r" * 101
            + ", sources: [v4only], destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="r" * 101),
            DEVICE,
            "101 characters; EOS takes at most 100",
        ),
        (
            "rules:\n  - {name: 'why?', sources: [v4only], destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="'why?'"),
            DEVICE,
            "match 'why?': EOS names are one word",
        ),
        (
            "rules:\n  - {name: règle, sources: [v4only], destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="règle"),
            DEVICE,
            "match 'règle': EOS names are one word",
        ),
        (
            "rules:\n  - {name: ipv4-all-default, sources: [v4only], destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="ipv4-all-default"),
            DEVICE,
            "reserved by EOS",
        ),
        (
            "rules:\n  - {name: a, sources: [v4only], destinations: any, services: any}\n  - {name: a-reverse, sources: [v4only], destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="a, a-reverse"),
            DEVICE,
            "both produce match 'a-reverse'",
        ),
        (
            "monitor_objects:\n  - {name: mon, tunnel_destination: 10.9.9.9}\n"
            "rules:\n  - {name: r, sources: [v4only], monitor: mon, destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="r"),
            DEVICE,
            "monitor object 'mon' has no monitor node",
        ),
        (
            "rules:\n  - {name: r, sources: [v6only], action: redirect, redirect: v4fw, destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="r"),
            DEVICE,
            "redirect object 'v4fw' has no ipv6 next-hop",
        ),
        (
            "rules:\n  - {name: r, sources: [v4only], destinations: any, services: any}\n"
            "policies:\n  - {name: p1, id: 7, domain: dc, vrf: ALL, rules: [r]}\n"
            "  - {name: p2, id: 8, domain: dc, vrf: ALL, rules: [r]}\n",
            DEVICE,
            "policies 'p1' and 'p2' both bind to VRF 'ALL'",
        ),
    ],
)
def test_compile_errors_name_the_object_and_write_nothing(
    run_cli, tmp_path, extra, device, message
):
    # `devices:` in `extra` is a second devices section: merge it into BASE's list instead.
    if extra.startswith("devices:"):
        path = tmp_path / "policy.yaml"
        path.write_text(BASE.replace("devices:\n", "devices:\n  - name: lonely\n", 1))
    else:
        path = write_policy(tmp_path, extra)
    output = tmp_path / "out.cfg"
    result = run_cli("compile", str(path), "--device", device, "-o", str(output))
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind either


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "rules:\n  - {name: r, action: redirect, sources: any, destinations: any, services: any}\n"
            + POLICY.format(vrf="ALL", rules="r"),
            "action redirect needs a redirect object",
        ),
        (
            "rules:\n  - {name: r}\n" + POLICY.format(vrf="green", rules="r"),
            "VRF 'green' is not in domain 'dc'",
        ),
    ],
)
def test_errors_the_model_catches_at_load_time(run_cli, tmp_path, extra, message):
    path = write_policy(tmp_path, extra)
    result = run_cli("compile", str(path), "--device", DEVICE)
    assert result.exit_code == 1
    assert message in result.stderr


def test_nftables_refuses_what_it_cannot_express(run_cli, tmp_path):
    path = write_policy(
        tmp_path,
        "rules:\n  - {name: r, sources: [v4only], action: redirect, redirect: fw, destinations: any, services: any}\n"
        + POLICY.format(vrf="ALL", rules="r"),
    )
    result = run_cli("compile", str(path), "--device", DEVICE, "--target", "nftables")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: target 'nftables' cannot enforce rule 'r': it redirects to next-hops "
        "(capability: redirect)\n"
    )


def test_output_file_is_written_only_on_success(run_cli, tmp_path):
    path = write_policy(
        tmp_path,
        "rules:\n  - {name: r, sources: [v4only], destinations: any, services: any}\n"
        + POLICY.format(vrf="ALL", rules="r"),
    )
    output = tmp_path / "leaf1.cfg"
    output.write_text("previous\n")
    result = run_cli("compile", str(path), "--device", DEVICE, "-o", str(output))
    assert result.exit_code == 0
    assert output.read_text().startswith("traffic-policies\n")
    broken = run_cli("compile", str(path), "--device", "nosuch", "-o", str(output))
    assert broken.exit_code == 1
    assert output.read_text().startswith("traffic-policies\n")


def test_a_broken_device_does_not_block_compiling_another(run_cli, tmp_path):
    text = (
        BASE.replace("devices:\n", "devices:\n  - name: leaf2\n", 1).replace(
            "domains:\n", "domains:\n  - {name: other, devices: [leaf2]}\n", 1
        )
        + "rules:\n  - {name: ok, sources: [v4only], destinations: any, services: any}\n"
        + "  - {name: broken, sources: [v6only], services: [PING], destinations: any}\n"
        + "policies:\n  - {name: p1, id: 1, domain: dc, vrf: ALL, rules: [ok]}\n"
        + "  - {name: p2, id: 2, domain: other, vrf: ALL, rules: [broken]}\n"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    assert run_cli("compile", str(path), "--device", "leaf1").exit_code == 0
    broken = run_cli("compile", str(path), "--device", "leaf2")
    assert broken.exit_code == 1
    assert "rule 'broken'" in broken.stderr


def test_nftables_refuses_a_segment_name_linux_cannot_take_as_interface(run_cli, tmp_path):
    # nftables keys a VRF on `meta iifname`: a Linux interface name is at most 15 bytes
    # (IFNAMSIZ 16) without whitespace or '/'; nft itself refuses longer strings.
    from microseg.compile import compile_device
    from microseg.compile.resolve import CompileError
    from microseg.model import PolicySet
    from microseg.targets.nftables.render import render_ruleset

    def ruleset(segment: str) -> str:
        policy_set = PolicySet.model_validate(
            {
                "devices": [
                    {
                        "name": "r1",
                        "platform": "nftables",
                        "segments": [{"name": segment, "vrf": "blue"}],
                    }
                ],
                "domains": [{"name": "dc", "devices": ["r1"], "vrfs": ["blue"]}],
                "policies": [{"name": "p", "id": 1, "domain": "dc", "vrf": "blue"}],
            }
        )
        return render_ruleset(compile_device(policy_set, "r1"))

    assert 'meta iifname { "Vlan10" } goto policy/p' in ruleset("Vlan10")
    for bad in ("servers-dmz-segment", "Vlan 10", "eth0/1"):
        with pytest.raises(CompileError, match=f"segment '{bad}'.*interface name"):
            ruleset(bad)


@pytest.mark.parametrize(
    "separator", ["\u2028", "\u2029", "\x85", "\x0b"], ids=["LS", "PS", "NEL", "VT"]
)
def test_a_description_that_would_split_a_comment_line_is_refused_at_its_line(
    run_cli, tmp_path, separator
):
    # splitlines() (how a configuration is read back into lines and eAPI commands) breaks a
    # line at each of these: the rest of a `!!` comment would reach the switch as commands.
    escaped = separator.encode("unicode_escape").decode()
    path = write_policy(
        tmp_path,
        "rules:\n"
        f'  - {{name: r, description: "ok{escaped}   match EVIL ipv4", sources: [v4only],'
        " destinations: any, services: any}\n" + POLICY.format(vrf="ALL", rules="r"),
    )
    result = run_cli("compile", str(path), "--device", DEVICE)
    assert result.exit_code == 1, result.stdout
    (line,) = [line for line in result.stderr.splitlines() if "description" in line]
    assert line.startswith(f"  {path}:") and "rule 'r' description: " in line, result.stderr
    assert "line separators" in line
    assert "EVIL" not in result.stdout


@pytest.mark.parametrize("target", ["eos", "nftables"])
def test_renderers_refuse_a_line_separator_a_policy_set_built_without_validation_carries(
    target,
):
    # Defence in depth: model_copy does not validate, so a program (or a bug) can hand the
    # renderers any text; neither may write it into the configuration.
    from microseg.compile.resolve import CompileError
    from microseg.policyfile import load_policy_text
    from microseg.targets.render import render_config

    policy_set = load_policy_text(
        BASE
        + "rules:\n  - {name: r, sources: [v4only], destinations: any, services: any}\n"
        + POLICY.format(vrf="ALL", rules="r"),
        "policy.yaml",
    )
    rule = policy_set.rule("r").model_copy(update={"description": "ok\u2028   match EVIL ipv4"})
    renamed = policy_set.policies[0].model_copy(update={"name": "p\u2028counter evil"})
    cases = [(policy_set.model_copy(update={"policies": (renamed,)}), "line break")]
    if target == "eos":  # nftables writes no descriptions; EOS names are printable ASCII
        cases = [
            (policy_set.model_copy(update={"rules": (rule,)}), "line break"),
            (cases[0][0], "EOS names are one word of printable ASCII"),
        ]
    for broken, refusal in cases:
        with pytest.raises(CompileError, match=refusal):
            render_config(broken, DEVICE, target)
