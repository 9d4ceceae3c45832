"""Device credentials: from the environment or a private credentials file, never shown."""

from __future__ import annotations

import pytest

from microseg.deploy.credentials import Credentials, CredentialsError, CredentialStore
from microseg.policyfile import load_policy
from support import EXAMPLES

SWITCH = "andreasm-720xp-home"
VZTX = "andreas-ztx1"
FILE = f"""\
[default]
username = "microseg"
password = "default-secret"

[domains.andreas-lab-domain]
username = "netops"
password = "domain-secret"

[devices.{VZTX}]
username = "admin"
password = "vztx-secret"
ca_file = "/etc/microseg/lab-ca.pem"
"""


@pytest.fixture
def policy():
    return load_policy(EXAMPLES / "home-lab-monitor.yaml")


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    for name in ("MICROSEG_DEVICE_USERNAME", "MICROSEG_DEVICE_PASSWORD", "MICROSEG_DEVICE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("MICROSEG_CREDENTIALS_FILE", raising=False)


def credentials_file(tmp_path, monkeypatch, text=FILE, mode=0o600):
    path = tmp_path / "credentials.toml"
    path.write_text(text)
    path.chmod(mode)
    monkeypatch.setenv("MICROSEG_CREDENTIALS_FILE", str(path))
    return path


def test_the_environment_logs_in_to_every_device(no_env, monkeypatch, policy):
    monkeypatch.setenv("MICROSEG_DEVICE_USERNAME", "admin")
    monkeypatch.setenv("MICROSEG_DEVICE_PASSWORD", "secret")
    store = CredentialStore(policy)
    assert store.for_device(SWITCH) == store.for_device(VZTX) == Credentials("admin", "secret")


def test_half_a_login_in_the_environment_is_an_error(no_env, monkeypatch, policy):
    monkeypatch.setenv("MICROSEG_DEVICE_USERNAME", "admin")
    with pytest.raises(CredentialsError, match="MICROSEG_DEVICE_PASSWORD is not set"):
        CredentialStore(policy)


def test_the_file_answers_per_device_then_domain_then_default(
    no_env, tmp_path, monkeypatch, policy
):
    credentials_file(tmp_path, monkeypatch)
    store = CredentialStore(policy)
    assert store.for_device(VZTX) == Credentials("admin", "vztx-secret", "/etc/microseg/lab-ca.pem")
    assert store.for_device(SWITCH) == Credentials("netops", "domain-secret")
    assert store.for_device("elsewhere") == Credentials("microseg", "default-secret")


def test_the_default_file_is_in_the_user_config_dir(no_env, tmp_path, policy):
    path = tmp_path / "config" / "microseg" / "credentials.toml"
    path.parent.mkdir(parents=True)
    path.write_text(FILE)
    path.chmod(0o600)
    assert CredentialStore(policy).for_device(SWITCH).username == "netops"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_others_can_read_is_refused(no_env, tmp_path, monkeypatch, policy, mode):
    path = credentials_file(tmp_path, monkeypatch, mode=mode)
    with pytest.raises(CredentialsError) as refused:
        CredentialStore(policy)
    assert str(refused.value) == (
        f"{path} has mode {mode:04o}: a credentials file must be readable by its owner only; "
        f"run: chmod 600 {path}"
    )


def test_no_login_for_a_device_names_the_device_and_the_file(no_env, tmp_path, monkeypatch, policy):
    path = credentials_file(
        tmp_path, monkeypatch, text='[devices.other]\nusername = "a"\npassword = "b"\n'
    )
    with pytest.raises(CredentialsError, match=f"device '{SWITCH}': {path} has no"):
        CredentialStore(policy).for_device(SWITCH)


def test_no_credentials_at_all_says_where_to_put_them(no_env, policy):
    with pytest.raises(
        CredentialsError, match="set MICROSEG_DEVICE_USERNAME and MICROSEG_DEVICE_PASSWORD"
    ):
        CredentialStore(policy).for_device(SWITCH)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[default]\nusername = "a"\npassword = \n', "not valid TOML"),
        ('[default]\nusername = "a"\n', r"\[default\]: password is missing"),
        ('[default]\nusername = "a"\npassword = "b"\ntoken = "c"\n', "unknown key 'token'"),
        ('[hosts.x]\nusername = "a"\n', r"unknown table \[hosts\]"),
        ("devices = 3\n", r"\[devices\] holds one table per name"),
    ],
)
def test_a_bad_file_is_a_clear_error(no_env, tmp_path, monkeypatch, policy, text, message):
    credentials_file(tmp_path, monkeypatch, text=text)
    with pytest.raises(CredentialsError, match=message):
        CredentialStore(policy).for_device(SWITCH)


def test_a_password_is_never_in_a_repr_or_a_message(no_env, tmp_path, monkeypatch, policy):
    credentials_file(
        tmp_path, monkeypatch, text='[default]\nusername = "a"\npassword = "hunter2"\nextra = 1\n'
    )
    with pytest.raises(CredentialsError) as refused:
        CredentialStore(policy).for_device(SWITCH)
    assert "hunter2" not in str(refused.value)
    assert "hunter2" not in repr(Credentials("a", "hunter2"))


def test_the_cli_refuses_a_readable_credentials_file(
    no_env, tmp_path, monkeypatch, run_cli, store_env
):
    monkeypatch.delenv("MICROSEG_DEVICE_USERNAME")
    monkeypatch.delenv("MICROSEG_DEVICE_PASSWORD")
    path = credentials_file(tmp_path, monkeypatch, mode=0o644)
    assert run_cli("import", str(EXAMPLES / "home-lab-dns-ntp.yaml")).exit_code == 0
    result = run_cli("drift")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {path} has mode 0644: a credentials file must be readable by its owner "
        f"only; run: chmod 600 {path}\n"
    )
