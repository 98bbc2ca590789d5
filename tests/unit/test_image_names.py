"""Image names as people write them (name, name:tag, registry:port/name:tag, name@sha256:...), and Docker errors as
one line naming host and image."""

from __future__ import annotations

import pytest
from docker.errors import APIError, ImageLoadError, InvalidArgument, NotFound
from docker.utils import parse_repository_tag
from hypothesis import assume, given
from hypothesis import strategies as st

from mlframework.cluster.image_names import parse_image
from mlframework.cluster.images import docker_errors
from mlframework.cluster.spec import ClusterSpec
from mlframework.exceptions import ConfigError, HostError

DIGEST = "sha256:" + "0123456789abcdef" * 4
SEED = dict(hosts="user@hostA", remote_path="tasks", project="task1", master="1", workers="1")


@pytest.mark.parametrize(
    ("given_name", "reference"),
    [
        ("rabbitmq", "rabbitmq:latest"),
        ("mylab/rabbitmq", "mylab/rabbitmq:latest"),
        ("rabbitmq:3-management", "rabbitmq:3-management"),
        ("registry.lab/mylab/rabbitmq:3", "registry.lab/mylab/rabbitmq:3"),
        ("registry.lab:5000/mylab/rabbitmq:3", "registry.lab:5000/mylab/rabbitmq:3"),
        ("localhost:5000/rabbitmq", "localhost:5000/rabbitmq:latest"),
        ("localhost/rabbitmq", "localhost/rabbitmq:latest"),
        ("docker.io/library/rabbitmq:3", "rabbitmq:3"),  # as the daemon lists it
        ("docker.io/mylab/rabbitmq", "mylab/rabbitmq:latest"),
        ("library/python:3.11-slim", "python:3.11-slim"),
        ("nvidia/cuda:12.4.1-runtime-ubuntu22.04", "nvidia/cuda:12.4.1-runtime-ubuntu22.04"),
        (f"rabbitmq@{DIGEST}", f"rabbitmq@{DIGEST}"),
        (f"rabbitmq:3@{DIGEST}", f"rabbitmq@{DIGEST}"),  # Docker goes by the digest
        (f"registry.lab:5000/mylab/rabbitmq@{DIGEST}", f"registry.lab:5000/mylab/rabbitmq@{DIGEST}"),
    ],
)
def test_every_form_docker_takes_has_the_reference_the_daemon_lists(given_name: str, reference: str) -> None:
    name = parse_image(given_name)
    assert name.reference == reference and str(name) == given_name
    assert name.pinned == ("@" in given_name)
    assert ClusterSpec.from_options(**SEED, broker_image=given_name, base_image=given_name).broker_image == given_name


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("MyLab/rabbitmq", "lowercase"),
        ("python 3", "lowercase"),
        ("rabbitmq:", "tag ''"),
        ("rabbitmq:-x", "tag '-x'"),
        ("rabbitmq@sha256:abc", "not a digest"),
        (f"rabbitmq@{DIGEST.upper().replace('SHA256', 'sha256')}", "lowercase hex"),
        ("https://registry.lab/rabbitmq", "scheme"),
        ("mylab//rabbitmq", "repository name"),
        ("-registry.lab:5000/rabbitmq", "registry '-registry.lab:5000'"),
    ],
)
def test_a_name_docker_would_refuse_is_one_line_naming_the_option_and_the_forms(bad: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ClusterSpec.from_options(**SEED, broker_image=bad)
    message = str(info.value)
    assert "\n" not in message and message.startswith("--broker-image ") and words in message
    assert "name:tag" in message and "name@sha256:<digest>" in message
    with pytest.raises(ConfigError, match=r"^BASE_IMAGE=.* in config.sh: "):
        ClusterSpec.from_config(
            {"HOSTS": "hostA", "REMOTE_PATH": "t", "PROJECT": "p", "MASTER": "1"} | {"BASE_IMAGE": bad}
        )


def test_a_digest_broker_image_cannot_be_shipped_and_the_line_says_why_and_what_instead() -> None:
    pinned = f"mylab/rabbitmq@{DIGEST}"
    with pytest.raises(ConfigError) as info:
        ClusterSpec.from_options(**SEED, broker_image=pinned, image_source="ship")
    message = str(info.value)
    assert "\n" not in message and f"--broker-image {pinned}" in message and "--image-source ship" in message
    assert "docker load keeps no digest" in message and "--image-source build" in message
    assert ClusterSpec.from_options(**SEED, broker_image=pinned).broker_image == pinned  # build: pulled by digest
    shipped = ClusterSpec.from_options(**SEED, base_image=f"python@{DIGEST}", image_source="ship")
    assert shipped.base_image == f"python@{DIGEST}"  # the base is only built FROM here, never shipped


# Parts of names in Docker's grammar (github.com/distribution/reference).
_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_component = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum,
    st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), _alnum), max_size=2),
)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?", fullmatch=True)
_registry = st.builds(
    lambda labels, port: ".".join(labels) + (f":{port}" if port else ""),
    st.lists(_label, min_size=2, max_size=3),
    st.one_of(st.none(), st.integers(1, 65535)),
) | st.sampled_from(["localhost", "localhost:5000"])
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)


@given(
    registry=st.one_of(st.none(), _registry),
    path=st.lists(_component, min_size=1, max_size=3).map("/".join),
    tag=st.one_of(st.none(), _tag),
    digest=st.one_of(st.none(), _digest),
)
def test_any_name_in_dockers_grammar_splits_back_into_its_parts_and_its_reference_is_stable(
    registry: str | None, path: str, tag: str | None, digest: str | None
) -> None:
    first = path.split("/")[0]
    assume(registry or "/" not in path or ("." not in first and first != "localhost"))  # else Docker reads a registry
    text = (f"{registry}/" if registry else "") + path + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    name = parse_image(text)
    familiar = (
        path[len("library/") :] if not registry and path.startswith("library/") and path.count("/") == 1 else path
    )
    assert name.repository == (f"{registry}/" if registry else "") + familiar
    assert name.digest == digest
    if digest:
        assert name.reference == f"{name.repository}@{digest}"
    else:
        assert name.reference == f"{name.repository}:{tag or 'latest'}"  # no tag means :latest
    again = parse_image(name.reference)
    assert again.reference == name.reference and again.repository == name.repository
    # The docker SDK's own split of the reference (what images.pull() does with it) agrees.
    assert parse_repository_tag(name.reference) == (name.repository, digest or tag or "latest")


def _api_error(status: int, explanation: str) -> APIError:
    class Response:  # the parts of a requests.Response that APIError reads
        status_code = status
        reason = "Server Error"
        url = "http+docker://ssh/v1.43/images/x/json"

    return APIError(f"{status} Server Error for {Response.url}", Response(), explanation)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            InvalidArgument("mylab/rabbitmq is not a valid tag for this image"),
            "mylab/rabbitmq is not a valid tag for this image",
        ),
        (
            _api_error(500, "write /var/lib/docker/tmp: no space left\non device"),
            "write /var/lib/docker/tmp: no space left on device",
        ),
        (NotFound("404", explanation="No such image: mylab/rabbitmq:latest"), "No such image: mylab/rabbitmq:latest"),
        (ImageLoadError("unexpected EOF"), "unexpected EOF"),
    ],
)
def test_a_docker_error_is_one_line_naming_host_image_what_docker_said_and_what_to_do(error, said) -> None:
    with (
        pytest.raises(HostError) as info,
        docker_errors("u@10.0.0.5", "loading the shipped image mylab/rabbitmq", "do X"),
    ):
        raise error
    message = str(info.value)
    assert message == f"u@10.0.0.5: loading the shipped image mylab/rabbitmq failed: {said}; do X"
    assert info.value.host == "u@10.0.0.5" and info.value.__suppress_context__
    assert "http+docker" not in message  # the daemon's words, not the SDK's URL


def test_errors_that_are_not_dockers_keep_their_type_and_traceback() -> None:
    with pytest.raises(KeyError), docker_errors("h", "starting workers from image w:1", "do X"):
        raise KeyError("Id")
