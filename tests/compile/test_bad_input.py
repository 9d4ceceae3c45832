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
    from microseg.compile.nftables import render_ruleset
    from microseg.compile.resolve import CompileError
    from microseg.model import PolicySet

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
