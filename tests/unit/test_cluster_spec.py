"""infrainit options -> ClusterSpec, config.sh as data (never run), cluster secrets on disk."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlframework.cluster.config_file import find_project, load_config, save_config
from mlframework.cluster.envfile import format_config, parse_config, quote_value
from mlframework.cluster.hosts import Host, parse_host_list, parse_host_refs
from mlframework.cluster.secrets import ClusterSecrets
from mlframework.cluster.spec import DEFAULT_BASE_IMAGE, ClusterSpec
from mlframework.exceptions import ConfigError

SEED = dict(
    hosts="user@hostA,user@hostB",
    ssh_key="~/.ssh/id_rsa",
    remote_path="celery_tasks",
    project="task1",
    master="1",
    workers="local,1,2",
)
BASH = shutil.which("bash")


def options(**changes: object) -> dict[str, object]:
    merged = {**SEED, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def config_error(**changes: object) -> str:
    with pytest.raises(ConfigError) as info:
        ClusterSpec.from_options(**options(**changes))
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- hosts and the seed example


def test_seed_example() -> None:
    spec = ClusterSpec.from_options(**SEED)
    host_a, host_b = spec.hosts
    assert (host_a.address, host_a.user, host_a.port, host_a.number) == ("hostA", "user", 22, 1)
    assert host_b.target == "user@hostB" and str(host_b) == "user@hostB"
    assert spec.master == host_a and spec.broker_address is None
    assert spec.workers == (Host.local(), host_a, host_b)
    assert spec.workers[0].is_local and not host_a.is_local
    assert spec.hosts_in_use == (Host.local(), host_a, host_b)
    assert spec.remote_path == "celery_tasks" and spec.project == "task1"
    assert spec.ssh_key == "~/.ssh/id_rsa" and spec.ssh_key_path == Path.home() / ".ssh/id_rsa"
    assert (spec.base_image, spec.image_source, spec.cpu_slots) == (DEFAULT_BASE_IMAGE, "build", None)
    assert spec.accept_new_host_keys is False and spec.cluster_name == "task1"
    assert spec.broker_endpoint() == ("hostA", 5672)


def test_host_forms() -> None:
    hosts = parse_host_list("gpu1, alice@gpu2:2222,[::1]:2200,bob@fe80::1,10.0.0.5")
    assert [(h.address, h.user, h.port, h.number) for h in hosts] == [
        ("gpu1", None, 22, 1),
        ("gpu2", "alice", 2222, 2),
        ("::1", None, 2200, 3),
        ("fe80::1", "bob", 22, 4),
        ("10.0.0.5", None, 22, 5),
    ]
    assert [str(h) for h in hosts] == ["gpu1", "alice@gpu2:2222", "[::1]:2200", "bob@[fe80::1]", "10.0.0.5"]
    assert parse_host_list(",".join(str(h) for h in hosts)) == hosts
    assert str(Host.local()) == "local" and Host.local().ref == "local" and hosts[1].ref == "2"


def test_host_refs() -> None:
    hosts = parse_host_list("a,b,c")
    assert parse_host_refs("3, local ,1", hosts, "-w") == (hosts[2], Host.local(), hosts[0])
    assert parse_host_refs("LOCAL", hosts, "-m") == (Host.local(),)


def test_local_master_broker_endpoint_and_options() -> None:
    spec = ClusterSpec.from_options(**options(master="local", workers="local"))
    assert spec.broker_host_address is None and spec.broker_endpoint() == ("127.0.0.1", 5672)
    spec = ClusterSpec.from_options(**options(master="local", workers="1"))
    with pytest.raises(ConfigError, match="this machine's address"):
        spec.broker_endpoint()
    assert spec.broker_endpoint("192.168.1.10") == ("192.168.1.10", 5672)
    spec = ClusterSpec.from_options(
        **options(
            master=None,
            broker="rabbit.lan:5673",
            workers="2",
            cpu_slots="4",
            image_source="SHIP",
            accept_new_host_keys=True,
            remote_path="~/./jobs//celery/",
            project="../my Proj",
        )
    )
    assert spec.broker_endpoint() == ("rabbit.lan", 5673) and spec.master is None
    assert spec.cpu_slots == 4 and spec.image_source == "ship" and spec.accept_new_host_keys
    assert spec.remote_path == "jobs/celery" and spec.cluster_name == "my-proj"


# --------------------------------------------------------------------------- bad options: one line naming the option


@pytest.mark.parametrize(
    "changes, option, words",
    [
        (dict(hosts=None), "-a", "missing"),
        (dict(hosts=""), "-a", "missing"),
        (dict(hosts="hostA,,hostB"), "-a", "entry 2 is empty"),
        (dict(hosts="hostA,"), "-a", "entry 2 is empty"),
        (dict(hosts="user@hostA,hostA"), "-a", "same host"),
        (dict(hosts="hostA,HOSTA:22"), "-a", "same host"),
        (dict(hosts="hostA:0"), "-a", "port"),
        (dict(hosts="hostA:ssh"), "-a", "port"),
        (dict(hosts="-oProxyCommand=x"), "-a", "not a host name"),
        (dict(hosts="us er@hostA"), "-a", "user name"),
        (dict(hosts="@hostA"), "-a", "user name"),
        (dict(hosts="local"), "-a", "'local' is not a host address"),
        (dict(hosts="[hostA]:22"), "-a", "IPv6"),
        (dict(master="0"), "-m", "no host 0"),
        (dict(master="3"), "-m", "no host 3"),
        (dict(master="1,2"), "-m", "one host"),
        (dict(master="first"), "-m", "neither 'local' nor a host number"),
        (dict(workers="local,3"), "-w", "no host 3"),
        (dict(workers="0"), "-w", "no host 0"),
        (dict(workers="1,,2"), "-w", "entry 2 is empty"),
        (dict(workers="1,local,1"), "-w", "listed twice"),
        (dict(broker="hostC"), "-b", "exclude each other"),
        (dict(master=None), "-w", "needs a broker"),
        (dict(master=None, workers=None), "-m", "nothing to start"),
        (dict(master=None, broker="amqp://u:p@hostC//"), "-b", "host[:port] only"),
        (dict(master=None, broker="hostC:99999"), "-b", "port"),
        (dict(remote_path=None), "-r", "missing"),
        (dict(remote_path="/srv/tasks"), "-r", "relative"),
        (dict(remote_path="~root/x"), "-r", "relative"),
        (dict(remote_path="tasks/../../etc"), "-r", ".."),
        (dict(remote_path="."), "-r", "not the home itself"),
        (dict(remote_path="my tasks"), "-r", "no spaces"),
        (dict(remote_path="a\nb"), "-r", "line breaks"),
        (dict(project=None), "-d", "missing"),
        (dict(image_source="pull"), "--image-source", "build, ship"),
        (dict(cpu_slots="0"), "--cpu-slots", "1 or more"),
        (dict(cpu_slots="many"), "--cpu-slots", "1 or more"),
        (dict(trials_per_gpu="0"), "--trials-per-gpu", "1 to 64"),
        (dict(trials_per_gpu="half"), "--trials-per-gpu", "1 to 64"),
        (dict(flower_port="80"), "--flower-port", "1024 to 65535"),
        (dict(accept_new_host_keys="maybe"), "--accept-new-host-keys", "true or false"),
        (dict(base_image="python 3"), "--base-image", "image"),
        (dict(cluster_name="My Cluster"), "--cluster-name", "lowercase"),
    ],
)
def test_bad_options_give_one_line_naming_the_option(changes: dict, option: str, words: str) -> None:
    message = config_error(**changes)
    assert option in message and words in message


def test_bad_option_message_shows_the_value() -> None:
    assert "-w local,3" in config_error(workers="local,3")
    assert "-r /srv/tasks" in config_error(remote_path="/srv/tasks")
    assert "-b hostC" in config_error(broker="hostC") and "-m 1" in config_error(broker="hostC")


def test_project_dir(tmp_path: Path) -> None:
    (tmp_path / "projects" / "mnist").mkdir(parents=True)
    (tmp_path / "projects" / "mnist" / "tasks.py").write_text("")
    (tmp_path / "projects" / "empty").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "tasks.py").write_text("")

    def spec(project: str) -> ClusterSpec:
        return ClusterSpec.from_options(**options(project=project))

    assert find_project(spec("mnist"), tmp_path) == (tmp_path / "projects" / "mnist").resolve()
    assert find_project(spec(str(tmp_path / "elsewhere")), "/nonexistent") == (tmp_path / "elsewhere").resolve()
    assert find_project(spec("./elsewhere"), "/nonexistent", cwd=tmp_path) == (tmp_path / "elsewhere").resolve()
    with pytest.raises(ConfigError, match=r"^-d mnst: no project directory .*\(projects: mnist\)$"):
        find_project(spec("mnst"), tmp_path)
    with pytest.raises(ConfigError, match=r"^-d empty: .* has no tasks.py and no parameters file that gives a command"):
        find_project(spec("empty"), tmp_path)
    # A project with no tasks.py serves when one of its parameters files gives the command.
    (tmp_path / "projects" / "empty" / "broken.yml").write_text("mlframework: 3\n")
    (tmp_path / "projects" / "empty" / "sweep.yaml").write_text("mlframework:\n  command: python t.py {args}\nlr: 1\n")
    assert find_project(spec("empty"), tmp_path) == (tmp_path / "projects" / "empty").resolve()


def test_repo_sample_projects_resolve() -> None:
    root = Path(__file__).resolve().parents[2]
    for name in ("mnist", "sklearn_digits", "byo_command"):  # byo_command: no tasks.py, its command in parameters.yml
        assert find_project(ClusterSpec.from_options(**options(project=name)), root).name == name


# --------------------------------------------------------------------------- config.sh


def test_config_round_trip_through_a_file(tmp_path: Path) -> None:
    spec = ClusterSpec.from_options(
        **options(hosts="u@h1:2222,h2,[::1]", cpu_slots=3, broker=None, trials_per_gpu="2", flower_port="5556")
    )
    assert (spec.trials_per_gpu, spec.flower_port) == (2, 5556)
    path = tmp_path / "config.sh"
    save_config(path, spec.to_config())
    text = path.read_text()
    assert text.startswith("# ") and "never runs them" in text and "REMOTE_PATH" in text
    assert ClusterSpec.from_config(load_config(path), str(path)) == spec


def test_config_overrides_win_and_errors_name_the_source() -> None:
    values = ClusterSpec.from_options(**SEED).to_config()
    spec = ClusterSpec.from_config(values, "config.sh", overrides={"workers": "2", "project": None})
    assert [w.number for w in spec.workers] == [2] and spec.project == "task1"
    with pytest.raises(ConfigError, match=r"^WORKERS=0 in config.sh: there is no host 0; "):
        ClusterSpec.from_config({**values, "WORKERS": "0"}, "config.sh")
    with pytest.raises(ConfigError, match="^-w 9: there is no host 9"):
        ClusterSpec.from_config(values, "config.sh", overrides={"workers": "9"})
    with pytest.raises(ConfigError, match=r"^HOSTS='a b' in config.sh \(entry 1\): 'a b' is not a host name"):
        ClusterSpec.from_config({**values, "HOSTS": "a b"})
    with pytest.raises(ConfigError, match="^HOSTS in config.sh is missing"):
        ClusterSpec.from_config({k: v for k, v in values.items() if k != "HOSTS"})
    with pytest.raises(ConfigError, match="^config.sh: unknown setting HOST "):
        ClusterSpec.from_config({**values, "HOST": "x"})
    with pytest.raises(ConfigError, match="^-b hostC and MASTER=1 in config.sh exclude each other"):
        ClusterSpec.from_config(values, overrides={"broker": "hostC"})


def test_parse_config_accepts_the_safe_subset() -> None:
    text = "\n".join(
        [
            "#!/bin/bash",
            "",
            "  # comment",
            "A=plain-value_1.2/x:y@z,w%+=^",
            'export B="dq \\" \\\\ \\$ \\` \\n kept" # trailing comment',
            "C='single $(not run) `x` \\'",
            "D=",
            'E=""',
            "F=con\"cat\"'ed'",
            "\tG=1\t",
            "",
        ]
    )
    assert parse_config(text) == {
        "A": "plain-value_1.2/x:y@z,w%+=^",
        "B": 'dq " \\ $ ` \\n kept',
        "C": "single $(not run) `x` \\",
        "D": "",
        "E": "",
        "F": "concated",
        "G": "1",
    }


@pytest.mark.parametrize(
    "line, words",
    [
        ("A=$(touch {marker})", "$ expands"),
        ('A="$(touch {marker})"', "$ expands"),
        ("A=`touch {marker}`", "backticks"),
        ('A="`touch {marker}`"', "backticks"),
        ("A=x; touch {marker}", "';' separates"),
        ("A=x && touch {marker}", "text after the value"),
        ("A=x touch {marker}", "text after the value"),
        ("touch {marker}", "expected '='"),
        ("A=x|touch {marker}", "pipes"),
        ("A=$HOME", "$ expands"),
        ("A=~/x", "unquoted ~"),
        ('A="unterminated', "unterminated double quote"),
        ("A='unterminated", "unterminated single quote"),
        ('A="x\\', "end of the line"),
        ("A = 1", "expected '='"),
        ("A+=1", "expected '='"),
        ("export", "expected '=' right after export"),
        ("export  ", "expected NAME=value"),
        ("A=a\\ b", "backslash outside quotes"),
        ("A=x#y", "'#' inside"),
        ("A=x\r", "Windows line endings"),
        ("A=é", "must be quoted"),
    ],
)
def test_parse_config_refuses_shell_code_and_runs_nothing(tmp_path: Path, line: str, words: str) -> None:
    marker = tmp_path / "touched"
    path = tmp_path / "config.sh"
    path.write_text(f"# ok\nOK=1\n{line.format(marker=marker)}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: ") and words in message and "\n" not in message
    assert not marker.exists()


def test_parse_config_refuses_a_name_set_twice_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config.sh:3: A is already set on line 1$"):
        parse_config("A=1\n\nA=2\n")
    with pytest.raises(ConfigError, match="not found; run infrainit once without -f"):
        load_config(tmp_path / "config.sh")
    (tmp_path / "bin.sh").write_bytes(b"A=\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "bin.sh")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_parse_config_fuzz_gives_a_dict_or_one_config_error(text: str) -> None:
    try:
        values = parse_config(text)
    except ConfigError as exc:
        assert str(exc).startswith("config.sh:") and "\n" not in str(exc)
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())


# Any value a config may hold: everything but line breaks and NUL (refused, see test below).
config_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0"))
config_names = st.from_regex(r"CFG_[A-Z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=300)
@given(st.dictionaries(config_names, config_values, max_size=8))
def test_format_then_parse_round_trips(values: dict[str, str]) -> None:
    assert parse_config(format_config(values, ["header", "", "more"])) == values


def test_values_with_line_breaks_are_refused(tmp_path: Path) -> None:
    for bad in ("a\nb", "a\rb", "a\0b"):
        with pytest.raises(ConfigError, match="line breaks and NUL"):
            quote_value(bad)
    with pytest.raises(ConfigError):
        save_config(tmp_path / "config.sh", {"A": "x\ny"})
    assert not (tmp_path / "config.sh").exists()


def bash_values(tmp_path: Path, text: str, names: list[str]) -> list[str]:
    """What bash itself makes of ``text`` (run in an empty environment, in tmp_path)."""
    (tmp_path / "cfg.sh").write_text(text, encoding="utf-8")
    script = 'set -e; source ./cfg.sh; for n in "$@"; do printf "%s\\0" "${!n}"; done'
    done = subprocess.run(
        [BASH, "--noprofile", "--norc", "-c", script, "bash", *names],
        cwd=tmp_path,
        env={},
        capture_output=True,
        check=True,
        timeout=10,
    )
    return done.stdout.decode("utf-8").split("\0")[:-1]


@pytest.mark.skipif(BASH is None, reason="bash is needed to compare with the shell")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(config_names, config_values, min_size=1, max_size=5))
def test_bash_source_gives_the_same_values_as_save_config_wrote(tmp_path: Path, values: dict[str, str]) -> None:
    assert bash_values(tmp_path, format_config(values), list(values)) == list(values.values())


_segment = st.one_of(
    st.text(st.sampled_from(sorted("abcXYZ019_./,:@%+=^-")), min_size=1),  # bare
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0'")).map(lambda s: f"'{s}'"),
    st.lists(
        st.one_of(  # double quoted, with escapes and literal backslashes
            st.characters(blacklist_categories=("Cs",), blacklist_characters='\n\r\0"\\$`'),
            st.sampled_from(['\\"', "\\\\", "\\$", "\\`", "\\a", "\\n", "\\'"]),
        )
    ).map(lambda p: '"' + "".join(p) + '"'),
)


@pytest.mark.skipif(BASH is None, reason="bash is needed to compare with the shell")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.booleans(), st.lists(_segment, max_size=4), st.sampled_from(["", "  # note", "\t"])),
        min_size=1,
        max_size=5,
    )
)
def test_whatever_parse_config_accepts_bash_reads_the_same(tmp_path: Path, lines: list) -> None:
    names = [f"CFG_{i}" for i in range(len(lines))]
    text = "\n".join(
        ("export " if export else "") + f"{name}={''.join(segments)}{tail}"
        for name, (export, segments, tail) in zip(names, lines)
    )
    parsed = parse_config("# generated\n\n" + text)
    assert bash_values(tmp_path, text, names) == [parsed[n] for n in names]


# --------------------------------------------------------------------------- secrets


def test_secrets_file_is_private_and_load_or_create_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / ".mlframework" / "secrets.env"
    first = ClusterSecrets.load_or_create(path, "mnist")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert first.rabbitmq_user == first.rabbitmq_vhost == "mlf-mnist" and len(first.rabbitmq_password) >= 24
    assert ClusterSecrets.load_or_create(path, "other") == first == ClusterSecrets.load(path)
    assert [p.name for p in path.parent.iterdir()] == ["secrets.env"]  # no temporary files left
    assert ClusterSecrets.generate("mnist") != first
    # the same NAME="value" format as config.sh, read as data
    assert parse_config(path.read_text())["RABBITMQ_PASSWORD"] == first.rabbitmq_password


def test_secrets_file_created_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        ClusterSecrets.generate("x").save(tmp_path / "secrets.env")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secrets.env").stat().st_mode) == 0o600


def test_readable_secrets_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    ClusterSecrets.generate("x").save(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\); run chmod 600 "):
        ClusterSecrets.load(path)
    with pytest.raises(ConfigError, match="chmod 600"):
        ClusterSecrets.load_or_create(path, "x")


def test_broken_secrets_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'RABBITMQ_USER="u"\n')
    os.close(fd)
    with pytest.raises(ConfigError, match="RABBITMQ_PASSWORD is missing"):
        ClusterSecrets.load(path)


def test_secrets_repr_hides_passwords_and_broker_url_quotes() -> None:
    secrets = ClusterSecrets(
        rabbitmq_user="mlf-x",
        rabbitmq_password="p@ss/w:rd",
        rabbitmq_vhost="mlf/x",
        flower_user="mlf-x",
        flower_password="fl0wer-secret",
        erlang_cookie="COOKIE123",
    )
    for text in (repr(secrets), str(secrets), f"{secrets}"):
        assert "p@ss" not in text and "fl0wer-secret" not in text and "COOKIE123" not in text
        assert "mlf-x" in text and "***" in text
    assert secrets.broker_url("hostA") == "amqp://mlf-x:p%40ss%2Fw%3Ard@hostA:5672/mlf%2Fx"
    assert secrets.broker_url("::1", 5673) == "amqp://mlf-x:p%40ss%2Fw%3Ard@[::1]:5673/mlf%2Fx"
    assert secrets.flower_basic_auth == "mlf-x:fl0wer-secret"
    from kombu.utils.url import url_to_parts

    parts = url_to_parts(secrets.broker_url("hostA"))
    assert (parts.username, parts.password, parts.path) == ("mlf-x", "p@ss/w:rd", "mlf/x")
