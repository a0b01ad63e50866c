"""The runbook's publish commands, run as an operator runs them: the Terraform output string,
through a real shell and the real gcloud, against the Pub/Sub emulator pushing to the function.

`terraform output` cannot run without an applied state, so the output's template is rendered from
terraform/outputs.tf (each interpolation it may contain is resolved explicitly; anything else fails
the test) and served by a small `terraform` stand-in on PATH. gcloud reaches the emulator through
CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB with a placeholder access token; the emulator checks none.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_terraform import _load

from standins import pubsub as spubsub
from standins.bigquery import PROJECT
from standins.generator import generate
from standins.process import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.pubsub,
    pytest.mark.skipif(spubsub.emulator_binary() is None, reason="Pub/Sub emulator not installed"),
    pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud not installed (Debian package google-cloud-cli)"),
]


def _render(output: str) -> str:
    """The value `terraform output -raw OUTPUT` prints, for the default name and PROJECT."""
    cfg = _load()
    template = cfg.outputs[output]["value"]
    name = cfg.variables["name"]["default"]
    assert cfg.resource("google_pubsub_topic", "sync")["name"] == "${var.name}"
    values = {
        "${google_pubsub_topic.sync.name}": name,
        "${var.project_id}": PROJECT,
        # Terraform's jsonencode is compact JSON, like separators=(",", ":").
        "${jsonencode(local.tick_message)}": json.dumps(cfg.locals["tick_message"], separators=(",", ":")),
        "${jsonencode(local.full_resync_message)}": json.dumps(cfg.locals["full_resync_message"], separators=(",", ":")),
    }
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    assert "${" not in template, f"unrendered interpolation in {output}: {template}"
    return template


@pytest.fixture
def shell_env(tmp_path, pubsub_host):
    """PATH with a `terraform` that answers `output -raw NAME`, and gcloud pointed at the emulator."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    outputs = {name: _render(name) for name in ("tick_command", "full_resync_command")}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs), encoding="utf-8")
    shim = bin_dir / "terraform"
    shim.write_text(
        f'#!{sys.executable}\nimport json, sys\nassert sys.argv[1:3] == ["output", "-raw"], sys.argv\n'
        f"sys.stdout.write(json.load(open({str(tmp_path / 'outputs.json')!r}))[sys.argv[3]])\n",
        encoding="utf-8",
    )
    shim.chmod(0o755)
    (tmp_path / "gcloud-config").mkdir()
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{pubsub_host}/",
        "CLOUDSDK_AUTH_ACCESS_TOKEN": "emulator-accepts-any-token",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
    }


def _bash(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    return result


def _ensure_topic(name: str) -> str:
    """The topic the commands publish to (both tests use the default name)."""
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(PROJECT, name)
    with contextlib.suppress(exceptions.AlreadyExists):
        publisher.create_topic(name=topic)
    return topic


def _topic_with_pull(name: str) -> tuple[str, str]:
    from google.cloud import pubsub_v1

    topic = _ensure_topic(name)
    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, f"{name}-watch"), topic=topic).name
    return topic, sub


def _received(sub: str) -> list[bytes]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    response = subscriber.pull(subscription=sub, max_messages=10, timeout=30)
    subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in response.received_messages])
    return [m.message.data for m in response.received_messages]


def test_eval_form_publishes_exactly_the_message_and_plain_substitution_does_not(shell_env):
    _, sub = _topic_with_pull(_load().variables["name"]["default"])
    _bash('eval "$(terraform output -raw tick_command)"', shell_env)
    _bash('eval "$(terraform output -raw full_resync_command)"', shell_env)
    assert sorted(_received(sub)) == sorted([b'{"type":"tick"}', b'{"type":"full_resync"}'])
    # The form the runbook used to show: word splitting keeps the single quotes in the body.
    _bash("$(terraform output -raw tick_command)", shell_env)
    assert _received(sub) == [b'\'{"type":"tick"}\'']


def test_the_runbook_tick_command_starts_a_run(env, shell_env, tmp_path):
    from google.cloud import pubsub_v1

    env.seed(generate(40, seed=81))
    name = _load().variables["name"]["default"]
    topic = _ensure_topic(name)
    port = free_port()
    log = open(tmp_path / "function.log", "wb")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "functions_framework", "--target", "sync_opportunities", "--signature-type", "http"]
    server = subprocess.Popen(
        [*command, "--source", str(ROOT / "main.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env.env_vars(), "SYNC_TOPIC": topic},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(
            name=subscriber.subscription_path(PROJECT, f"{name}-push"),
            topic=topic,
            push_config=pubsub_v1.types.PushConfig(push_endpoint=f"http://127.0.0.1:{port}/"),
        )
        time.sleep(2)  # functions-framework start-up; a push before it answers is simply retried
        _bash('eval "$(terraform output -raw tick_command)"', shell_env)
        deadline = time.monotonic() + 120
        while env.query("SELECT trigger, status FROM sync_runs") != [("tick", "success")]:
            assert time.monotonic() < deadline, (tmp_path / "function.log").read_text()[-2000:]
            time.sleep(1)
        assert env.query("SELECT count(*) FROM opportunities")[0][0] > 0
    finally:
        server.terminate()
        server.wait(10)
        log.close()
