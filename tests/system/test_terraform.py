"""Structural checks of terraform/ that need no provider download.

``terraform validate``/``plan`` cannot run offline (the google provider is not
reachable), so these tests parse the HCL with python-hcl2 and assert the wiring
that matters: one topic shared by scheduler and push subscription, the dead-letter
policy and the grants it needs, the function's env vars against the code's config,
every account's exact role set, the waits for IAM and metric propagation, each alert
and dashboard metric against a declared log-based metric, and the exact contents of
the function source zip. Argument names against the provider schema are checked by
scripts/check_provider_schema.py (tests/system/test_provider_schema.py).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"

if str(ROOT) not in sys.path:  # sync/ is imported from the repo root, not installed
    sys.path.insert(0, str(ROOT))

from sync.core.config import KNOWN_ENV_VARS, IpType  # noqa: E402

# The layout the README and reviewers rely on; a missing file fails loudly here
# instead of every other test passing vacuously on an empty parse.
EXPECTED_TF_FILES = {
    "versions.tf",
    "variables.tf",
    "main.tf",
    "pubsub.tf",
    "scheduler.tf",
    "iam.tf",
    "secrets.tf",
    "sql.tf",
    "network.tf",
    "function.tf",
    "migrate.tf",
    "monitoring.tf",
    "dashboard.tf",
    "outputs.tf",
    "webhook.tf",
}

RUNTIME_SA = "google_service_account.runtime"
INVOKER_SA = "google_service_account.invoker"
BUILD_SA = "google_service_account.build"
MIGRATE_SA = "google_service_account.migrate"
PUBSUB_AGENT = "local.pubsub_service_agent"


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


@dataclass
class Config:
    """All top-level blocks of the module, merged across files."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ephemeral: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert name in self.resources.get(rtype, {}), f"terraform/ has no resource {rtype}.{name}"
        return self.resources[rtype][name]

    def all_resources(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for rtype, by_name in self.resources.items():
            for name, body in by_name.items():
                yield rtype, name, body


def _load() -> Config:
    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True, preserve_heredocs=False)
    files = sorted(TF_DIR.glob("*.tf"))
    if not files:
        pytest.fail(f"no .tf files in {TF_DIR}")
    cfg = Config()
    for path in files:
        with path.open(encoding="utf-8") as fh:
            doc = hcl2.load(fh, serialization_options=options)
        for block in doc.get("resource", []):
            for rtype, by_name in block.items():
                cfg.resources.setdefault(rtype, {}).update(by_name)
        for kind, target in (("data", cfg.data), ("ephemeral", cfg.ephemeral)):
            for block in doc.get(kind, []):
                for rtype, by_name in block.items():
                    target.setdefault(rtype, {}).update(by_name)
        for block in doc.get("variable", []):
            cfg.variables.update(block)
        for block in doc.get("output", []):
            cfg.outputs.update(block)
        for block in doc.get("locals", []):
            cfg.locals.update(block)
        cfg.terraform.extend(doc.get("terraform", []))
        cfg.moved.extend(doc.get("moved", []))
    return cfg


@pytest.fixture(scope="module")
def cfg() -> Config:
    return _load()


def one(block: Any) -> dict[str, Any]:
    """A nested block (python-hcl2 returns a list) that must appear exactly once."""
    assert isinstance(block, list), f"expected a block list, got {block!r}"
    assert len(block) == 1, f"expected exactly one block, got {len(block)}"
    return block[0]


def refs(value: Any) -> str:
    """Everything an attribute mentions, flattened to one string for reference checks."""
    return json.dumps(value)


# ---------------------------------------------------------------------------
# Layout, variables, outputs, versions
# ---------------------------------------------------------------------------


def test_expected_files_exist() -> None:
    present = {p.name for p in TF_DIR.glob("*.tf")}
    assert present >= EXPECTED_TF_FILES, f"missing: {sorted(EXPECTED_TF_FILES - present)}"
    assert (TF_DIR / "terraform.tfvars.example").is_file()
    assert (TF_DIR / "README.md").is_file()


def test_every_variable_is_typed_and_described(cfg: Config) -> None:
    assert len(cfg.variables) > 20, "variables.tf parsed to almost nothing"
    for name, body in cfg.variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"


@pytest.mark.parametrize(
    ("variable", "bound"),
    [
        # The event-driven 2nd-gen maximum; the default must respect it too.
        ("function_timeout_seconds", "<= 540"),
        # sync/core/config.py accepts 1..50000.
        ("page_size", "<= 50000"),
        # The time budget must leave room for the last commit and the publish.
        ("time_budget_seconds", "var.function_timeout_seconds - 60"),
        # A lease shorter than a run would let two runs overlap.
        ("lease_seconds", ">= var.function_timeout_seconds"),
        ("region", "regex("),
        ("schedule", "regexall("),
        ("function_memory", "regex("),
        # Pub/Sub's own limits for a dead-letter policy.
        ("max_delivery_attempts", ">= 5"),
        ("max_delivery_attempts", "<= 100"),
        # Terraform sets the owner login's password: never point it at the instance's admin.
        ("db_user_name", '"postgres"'),
        # The push-failure alert aligns on 5-minute windows.
        ("alert_push_failure_minutes", "% 5 == 0"),
        ("alert_memory_utilization", "< 1"),
        # sync/core/config.py accepts a percentage in (0, 100] or off.
        ("delete_guard_percent", '"off"'),
        ("delete_guard_min_rows", ">= 1"),
    ],
)
def test_variable_is_validated(cfg: Config, variable: str, bound: str) -> None:
    conditions = [v["condition"] for v in cfg.variables[variable].get("validation", [])]
    assert any(bound in c for c in conditions), f"{variable}: no validation containing {bound!r}: {conditions}"


def test_timeout_default_within_limit(cfg: Config) -> None:
    assert cfg.variables["function_timeout_seconds"]["default"] <= 540
    assert cfg.variables["function_memory"]["default"] == "256M"


def test_providers_are_pinned_with_upper_bounds(cfg: Config) -> None:
    tf = one(cfg.terraform)
    assert ">=" in tf["required_version"]
    providers = one(tf["required_providers"])
    assert set(providers) == {"google", "archive", "random", "time", "fivetran"}
    for name, spec in providers.items():
        assert spec["source"] == ("fivetran/fivetran" if name == "fivetran" else f"hashicorp/{name}")
        assert "<" in spec["version"].replace("<=", "<"), f"{name} has no upper bound: {spec['version']}"


def test_outputs_an_operator_needs(cfg: Config) -> None:
    needed = {
        "topic_name",
        "function_name",
        "push_subscription",
        "dead_letter_topic",
        "dead_letter_subscription",
        "dead_letters_command",
        "dashboard_url",
        "service_account_email",
        "tick_command",
        "full_resync_command",
    }
    assert needed <= set(cfg.outputs), f"missing outputs: {sorted(needed - set(cfg.outputs))}"
    for name, body in cfg.outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name} has no description"
    command = cfg.outputs["full_resync_command"]["value"]
    assert command.startswith("gcloud pubsub topics publish ${google_pubsub_topic.sync.name}")
    assert "--message='${jsonencode(local.full_resync_message)}'" in command
    assert cfg.locals["full_resync_message"] == {"type": "full_resync"}
    assert "eventarc_trigger" not in cfg.outputs
    assert "google_monitoring_dashboard.sync.id" in cfg.outputs["dashboard_url"]["value"]
    dead_letters = cfg.outputs["dead_letters_command"]["value"]
    assert "SYNC_DEAD_LETTER_SUBSCRIPTION=${google_pubsub_subscription.dead_letter_inspect.id}" in dead_letters
    assert "SYNC_TOPIC=${google_pubsub_topic.sync.id}" in dead_letters
    assert dead_letters.endswith("python -m sync dead-letters")


# ---------------------------------------------------------------------------
# Trigger wiring
# ---------------------------------------------------------------------------


def test_scheduler_publishes_to_the_topic_the_push_subscription_delivers(cfg: Config) -> None:
    scheduler = cfg.resource("google_cloud_scheduler_job", "tick")
    scheduler_topic = one(scheduler["pubsub_target"])["topic_name"]
    push_topic = cfg.resource("google_pubsub_subscription", "push")["topic"]
    assert scheduler_topic == push_topic == "${google_pubsub_topic.sync.id}"
    # Continuations go to the same topic.
    assert cfg.locals["function_env_common"]["SYNC_TOPIC"] == push_topic
    assert scheduler["region"] == "${local.scheduler_region}"
    assert cfg.locals["scheduler_region"] == "${coalesce(var.scheduler_region, var.region)}"


def test_scheduler_payload_decodes_to_tick(cfg: Config) -> None:
    data = one(cfg.resource("google_cloud_scheduler_job", "tick")["pubsub_target"])["data"]
    assert data == "${base64encode(jsonencode(local.tick_message))}"
    message = cfg.locals["tick_message"]
    # What Terraform sends, decoded the way the function decodes it.
    encoded = base64.b64encode(json.dumps(message, separators=(",", ":")).encode())
    assert json.loads(base64.b64decode(encoded)) == {"type": "tick"}


def test_function_has_no_eventarc_trigger(cfg: Config) -> None:
    # An Eventarc trigger's subscription cannot take a dead-letter policy; ours can.
    assert "event_trigger" not in cfg.resource("google_cloudfunctions2_function", "sync")


def test_push_subscription_delivers_to_the_function_with_an_invoker_token(cfg: Config) -> None:
    push = cfg.resource("google_pubsub_subscription", "push")
    config = one(push["push_config"])
    uri = "${google_cloudfunctions2_function.sync.service_config[0].uri}"
    assert config["push_endpoint"] == uri
    # No no_wrapper block: functions-framework needs the Pub/Sub envelope to build the CloudEvent.
    assert "no_wrapper" not in config
    token = one(config["oidc_token"])
    assert token["service_account_email"] == f"${{{INVOKER_SA}.email}}"
    assert token["audience"] == uri


def test_push_subscription_retries_with_backoff_then_dead_letters(cfg: Config) -> None:
    push = cfg.resource("google_pubsub_subscription", "push")
    retry = one(push["retry_policy"])
    assert (retry["minimum_backoff"], retry["maximum_backoff"]) == ("10s", "600s")
    dead = one(push["dead_letter_policy"])
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert cfg.variables["max_delivery_attempts"]["default"] in range(5, 101)
    assert one(push["expiration_policy"])["ttl"] == "", "an idle push subscription would expire after 31 days"
    # Messages reaching the dead-letter topic need a subscription to stay in.
    inspect = cfg.resource("google_pubsub_subscription", "dead_letter_inspect")
    assert inspect["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert inspect["retain_acked_messages"] is True
    assert one(inspect["expiration_policy"])["ttl"] == ""


def _timeout_bounds(cfg: Config) -> tuple[int, int]:
    condition = one(cfg.variables["function_timeout_seconds"]["validation"])["condition"]
    low, high = re.findall(r"(\d+)", condition)
    return int(low), int(high)


def test_ack_deadline_covers_the_function_timeout(cfg: Config) -> None:
    push = cfg.resource("google_pubsub_subscription", "push")
    assert push["ack_deadline_seconds"] == "${min(var.function_timeout_seconds + 60, 600)}"
    low, high = _timeout_bounds(cfg)
    # Every timeout the variable accepts gets a deadline at least as long, within Pub/Sub's 600 s.
    for timeout in range(low, high + 1):
        deadline = min(timeout + 60, 600)
        assert timeout <= deadline <= 600, timeout


# The Python scripts/setup.sh builds the virtualenv on: the function's runtime.
RUNTIME_PYTHON = re.search(r"^RUNTIME_PYTHON=(\d+\.\d+)$", (ROOT / "scripts" / "setup.sh").read_text(), re.MULTILINE)


def test_the_function_runs_on_the_python_the_suite_is_built_on(cfg: Config) -> None:
    assert RUNTIME_PYTHON is not None, "scripts/setup.sh no longer names RUNTIME_PYTHON"
    build = one(cfg.resource("google_cloudfunctions2_function", "sync")["build_config"])
    assert build["runtime"] == "python" + RUNTIME_PYTHON.group(1).replace(".", "")


def test_the_suite_runs_on_the_functions_python() -> None:
    assert RUNTIME_PYTHON is not None
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert running == RUNTIME_PYTHON.group(1), (
        f"the suite runs on Python {running}, the function on {RUNTIME_PYTHON.group(1)}: run scripts/setup.sh"
        " (make setup), which makes .venv again on the function's Python"
    )


def test_function_runtime_settings(cfg: Config) -> None:
    function = cfg.resource("google_cloudfunctions2_function", "sync")
    build = one(function["build_config"])
    assert build["entry_point"] == "sync_opportunities"
    service = one(function["service_config"])
    assert service["max_instance_count"] == 1
    assert service["max_instance_request_concurrency"] == 1
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["timeout_seconds"] == "${var.function_timeout_seconds}"
    assert service["available_memory"] == "${var.function_memory}"
    assert service["service_account_email"] == f"${{{RUNTIME_SA}.email}}"
    assert "secret_environment_variables" not in service, "the code reads the password itself"
    # Waits for the build grants to propagate, not for the grants themselves.
    depends = function["depends_on"]
    assert "${time_sleep.build_grants}" in depends
    assert not any("build_" in d and "iam_member" in d for d in depends), depends


# ---------------------------------------------------------------------------
# Environment variables vs sync/core/config.py
# ---------------------------------------------------------------------------

ENV_LOCALS = ("function_env_common", "function_env_optional")


def _env_names(cfg: Config) -> set[str]:
    return {key for local in ENV_LOCALS for key in cfg.locals[local]}


def test_function_env_is_built_from_the_env_maps_only(cfg: Config) -> None:
    service = one(cfg.resource("google_cloudfunctions2_function", "sync")["service_config"])
    assert service["environment_variables"] == "${local.function_env}"
    merged = cfg.locals["function_env"]
    assert set(re.findall(r"local\.(\w+)", merged)) == set(ENV_LOCALS), merged
    # Every map is a literal, so its keys are exactly what the function gets.
    for local in ENV_LOCALS:
        assert isinstance(cfg.locals[local], dict), f"local.{local} must be a literal map"


def test_budget_is_derived_from_the_timeout_and_fits_it(cfg: Config) -> None:
    from sync.core.config import Settings
    from sync.core.deadline import RESERVE_SECONDS

    common = cfg.locals["function_env_common"]
    assert common["SYNC_FUNCTION_TIMEOUT_SECONDS"] == "${tostring(var.function_timeout_seconds)}"
    assert common["SYNC_TIME_BUDGET_SECONDS"] == "${tostring(local.time_budget_seconds)}"
    assert cfg.locals["commit_reserve_seconds"] == RESERVE_SECONDS  # one reserve, in Terraform and the code
    derived = "${coalesce(var.time_budget_seconds, var.function_timeout_seconds - local.commit_reserve_seconds - 60)}"
    assert cfg.locals["time_budget_seconds"] == derived
    low, high = _timeout_bounds(cfg)
    base = {"BIGQUERY_PROJECT": "my-project-1", "DATABASE_URL": "postgresql://u@h/d"}
    for timeout in range(low, high + 1):
        # The default budget, and the largest one the variable's validation lets through, both
        # start: sync/core/config.py refuses exactly what would not fit.
        for budget in (timeout - RESERVE_SECONDS - 60, timeout - RESERVE_SECONDS):
            env = {**base, "SYNC_FUNCTION_TIMEOUT_SECONDS": str(timeout), "SYNC_TIME_BUDGET_SECONDS": str(int(budget))}
            assert Settings.from_env(env).time_budget_seconds + RESERVE_SECONDS <= timeout


def test_env_names_are_known_to_the_code(cfg: Config) -> None:
    names = _env_names(cfg)
    unknown = names - KNOWN_ENV_VARS
    assert not unknown, f"Terraform sets variables sync/core/config.py does not read: {sorted(unknown)}"


def test_required_env_present_and_local_only_env_absent(cfg: Config) -> None:
    common = set(cfg.locals["function_env_common"])
    assert {"BIGQUERY_PROJECT", "SYNC_TOPIC", "INSTANCE_CONNECTION_NAME", "DB_USER", "DB_NAME"} <= common
    assert not _env_names(cfg) & {"DATABASE_URL", "BIGQUERY_API_ENDPOINT"}


def test_the_function_logs_in_as_its_own_iam_login_and_never_migrates(cfg: Config) -> None:
    common = cfg.locals["function_env_common"]
    assert common["DB_IAM_AUTH"] == "true"
    assert common["DB_USER"] == "${local.db_user}"
    # The migration job migrates; the function only requires a current schema.
    assert common["SYNC_AUTO_MIGRATE"] == "false"
    # No password of any login reaches the function.
    assert "DB_PASSWORD_SECRET" not in _env_names(cfg)


# ---------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------

# (resource type, role, scope attribute value) for every grant to the runtime SA.
EXPECTED_RUNTIME_GRANTS = {
    ("google_bigquery_dataset_iam_member", "roles/bigquery.dataViewer", "${var.salesforce_dataset}"),
    ("google_bigquery_dataset_iam_member", "roles/bigquery.dataViewer", "${var.gong_dataset}"),
    ("google_project_iam_member", "roles/bigquery.jobUser", "${local.bigquery_project}"),
    ("google_project_iam_member", "roles/cloudsql.client", "${local.sql_project}"),
    ("google_project_iam_member", "roles/cloudsql.instanceUser", "${local.sql_project}"),
    ("google_pubsub_topic_iam_member", "roles/pubsub.publisher", "${google_pubsub_topic.sync.id}"),
    # The webhook function runs as the same account and reads its signing key (webhook.tf).
    (
        "google_secret_manager_secret_iam_member",
        "roles/secretmanager.secretAccessor",
        "${google_secret_manager_secret.webhook[0].id}",
    ),
}
# The migration job's account: the instance, and the owner login's password.
EXPECTED_MIGRATE_GRANTS = {
    ("google_project_iam_member", "roles/cloudsql.client", "${local.sql_project}"),
    (
        "google_secret_manager_secret_iam_member",
        "roles/secretmanager.secretAccessor",
        "${google_secret_manager_secret.db_password.id}",
    ),
}
SCOPE_ATTRIBUTE = {
    "google_bigquery_dataset_iam_member": "dataset_id",
    "google_project_iam_member": "project",
    "google_secret_manager_secret_iam_member": "secret_id",
    "google_pubsub_topic_iam_member": "topic",
    "google_pubsub_subscription_iam_member": "subscription",
    "google_service_account_iam_member": "service_account_id",
    "google_cloud_run_v2_service_iam_member": "name",
    "google_artifact_registry_repository_iam_member": "repository",
}


def _grants_to(cfg: Config, account: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    grants = {}
    for rtype, name, body in cfg.all_resources():
        member = refs({k: v for k, v in body.items() if k in ("member", "members")})
        if account not in member:
            continue
        assert rtype in SCOPE_ATTRIBUTE or rtype.endswith("_iam_member"), f"{rtype}.{name} grants {account}"
        scope = body.get(SCOPE_ATTRIBUTE.get(rtype, "name"), "")
        grants[(rtype, body["role"], scope)] = body
    return grants


def test_runtime_service_account_has_exactly_the_expected_grants(cfg: Config) -> None:
    assert set(_grants_to(cfg, RUNTIME_SA)) == EXPECTED_RUNTIME_GRANTS


def test_migrate_service_account_has_exactly_the_expected_grants(cfg: Config) -> None:
    assert set(_grants_to(cfg, MIGRATE_SA)) == EXPECTED_MIGRATE_GRANTS


def test_cloud_sql_grants_are_narrowed_to_the_instance(cfg: Config) -> None:
    for account in (RUNTIME_SA, MIGRATE_SA):
        for (_, role, _), body in _grants_to(cfg, account).items():
            if role.startswith("roles/cloudsql."):
                assert "count" not in body, f"{account}: {role}"
                assert one(body["condition"])["expression"] == "${local.sql_instance_condition}", f"{account}: {role}"
    assert "/instances/${var.sql_instance_name}" in cfg.locals["sql_instance_condition"]


def test_no_broad_or_authoritative_grants_anywhere(cfg: Config) -> None:
    # Primitive roles and any service's admin/editor role.
    broad = re.compile(r"^roles/(owner|editor|viewer|.*\.(admin|editor)|.*Admin)$")
    for rtype, name, body in cfg.all_resources():
        # *_iam_binding / *_iam_policy replace everyone else's grants on the resource.
        assert not re.search(r"_iam_(binding|policy)$", rtype), f"{rtype}.{name} is authoritative"
        if "role" in body:
            assert not broad.match(body["role"]), f"{rtype}.{name} grants {body['role']}"
        if rtype == "google_project_iam_member":
            assert body["role"] not in {
                "roles/bigquery.dataViewer",
                "roles/secretmanager.secretAccessor",
                "roles/pubsub.publisher",
            }, f"{rtype}.{name}: {body['role']} must be granted on the resource, not the project"


def test_invoker_account_may_only_invoke_the_function(cfg: Config) -> None:
    assert set(_grants_to(cfg, INVOKER_SA)) == {
        ("google_cloud_run_v2_service_iam_member", "roles/run.invoker", "${google_cloudfunctions2_function.sync.name}")
    }


def test_pubsub_service_agent_grants_for_push_and_dead_letters(cfg: Config) -> None:
    assert cfg.locals["pubsub_service_agent"].endswith("@gcp-sa-pubsub.iam.gserviceaccount.com")
    assert set(_grants_to(cfg, PUBSUB_AGENT)) == {
        # Forward dead letters: publish to the dead-letter topic, ack on the source subscription.
        ("google_pubsub_topic_iam_member", "roles/pubsub.publisher", "${google_pubsub_topic.dead_letter.id}"),
        ("google_pubsub_subscription_iam_member", "roles/pubsub.subscriber", "${google_pubsub_subscription.push.id}"),
        # Mint the push OIDC token, on the invoker account only (not the project).
        ("google_service_account_iam_member", "roles/iam.serviceAccountTokenCreator", "${google_service_account.invoker.name}"),
    }


def test_build_account_reads_only_the_managed_source_buckets(cfg: Config) -> None:
    grants = _grants_to(cfg, BUILD_SA)
    assert set(grants) == {
        ("google_project_iam_member", "roles/logging.logWriter", "${var.project_id}"),
        ("google_project_iam_member", "roles/storage.objectViewer", "${var.project_id}"),
        (
            "google_artifact_registry_repository_iam_member",
            "roles/artifactregistry.writer",
            "${google_artifact_registry_repository.images.name}",
        ),
    }
    reader = grants[("google_project_iam_member", "roles/storage.objectViewer", "${var.project_id}")]
    expression = one(reader["condition"])["expression"]
    assert 'resource.name.startsWith(\\"projects/_/buckets/gcf-v2-sources-\\")' in refs(expression)
    # Our own source bucket needs no grant: Cloud Build reads the managed copy.
    assert "google_storage_bucket_iam_member" not in cfg.resources


def test_function_waits_for_the_build_grants_to_propagate(cfg: Config) -> None:
    sleep = cfg.resource("time_sleep", "build_grants")
    # IAM documents "typically 2 minutes, potentially 7 minutes or longer"; 60 s failed about
    # half the provider's own builder tests (provider issue #20571).
    assert sleep["create_duration"] == "420s"
    grants = {f"google_project_iam_member.{n}" for n in ("build_log_writer", "build_gcf_sources_reader")}
    grants.add("google_artifact_registry_repository_iam_member.build_image_writer")
    assert {re.sub(r"^\$\{(.*)\.id\}$", r"\1", v) for v in sleep["triggers"].values()} == grants


# ---------------------------------------------------------------------------
# Database, secret, bucket
# ---------------------------------------------------------------------------


def test_created_instances_default_to_the_newest_ga_major(cfg: Config) -> None:
    from standins.postgres_majors import NEWEST

    assert cfg.variables["postgres_version"]["default"] == f"POSTGRES_{NEWEST}"
    instance = cfg.resource("google_sql_database_instance", "created")
    assert instance["database_version"] == "${var.postgres_version}"


def test_sql_users_are_abandoned_not_deleted(cfg: Config) -> None:
    for name in ("runtime", "owner"):
        assert cfg.resource("google_sql_user", name)["deletion_policy"] == "ABANDON", name


def test_secret_version_follows_the_owner_login(cfg: Config) -> None:
    user = cfg.resource("google_sql_user", "owner")
    version = cfg.resource("google_secret_manager_secret_version", "db_password")
    # One rotation knob, on the user; the secret takes its key from there.
    assert user["password_wo_version"] == "${var.db_password_version}"
    assert version["secret_data_wo_version"] == "${google_sql_user.owner.password_wo_version}"
    # Any update or replacement of the user writes a new secret version in the same apply.
    assert one(version["lifecycle"])["replace_triggered_by"] == ["${google_sql_user.owner}"]
    assert user["password_wo"] == version["secret_data_wo"] == "${ephemeral.random_password.db.result}"


def test_two_logins_the_function_by_iam_and_the_owner_by_password(cfg: Config) -> None:
    runtime = cfg.resource("google_sql_user", "runtime")
    assert runtime["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert runtime["name"] == "${local.db_user}"
    assert '.gserviceaccount.com"' in cfg.locals["db_user"]
    assert "trimsuffix" in cfg.locals["db_user"]
    # No database_roles: an IAM login is created a member of cloudsqliamserviceaccount only, and
    # the migration job fails if it holds more (sync/postgres/grants.py).
    assert "database_roles" not in runtime
    owner = cfg.resource("google_sql_user", "owner")
    assert owner["type"] == "BUILT_IN"
    assert owner["name"] == "${var.db_user_name}"
    # A deployment made before the split keeps its users: the state moves, nothing is replaced.
    moved = {(m["from"], m["to"]) for m in cfg.moved}
    assert ("${google_sql_user.iam[0]}", "${google_sql_user.runtime}") in moved
    assert ("${google_sql_user.password[0]}", "${google_sql_user.owner}") in moved


def test_apply_runs_the_migration_job_as_the_owner_and_waits_for_it(cfg: Config) -> None:
    job = cfg.resource("google_cloud_run_v2_job", "migrate")
    # run_ (not start_) waits for the execution to complete; a new token per build or change.
    assert "run_execution_token" in job
    assert "start_execution_token" not in job
    token = job["run_execution_token"]
    assert all(f"local.{name}" in token for name in ("migrate_image", "migrate_args", "migrate_env")), token
    task = one(one(job["template"])["template"])
    assert task["service_account"] == f"${{{MIGRATE_SA}.email}}"
    container = one(task["containers"])
    assert container["image"] == "${local.migrate_image}"
    assert cfg.locals["migrate_args"] == ["python", "-m", "sync", "migrate", "--grant-to", "${local.db_user}"]
    env = cfg.locals["migrate_env"]
    assert env["DB_USER"] == "${google_sql_user.owner.name}"
    assert env["DB_PASSWORD_SECRET"] == "${google_secret_manager_secret.db_password.id}/versions/latest"
    assert set(env) <= KNOWN_ENV_VARS
    # The image is the function's current build, read after the function is updated.
    assert "google_cloudfunctions2_function.sync" in refs(cfg.data["google_cloud_run_v2_service"]["function"])


def test_no_password_reaches_state(cfg: Config) -> None:
    # Only write-only arguments carry the password, and it is generated ephemerally. The one managed
    # random_password is the webhook's signing key, which fivetran_webhook.secret would store anyway.
    assert set(cfg.resources.get("random_password", {})) <= {"webhook"}, "a managed random_password is stored in state"
    assert "db" in cfg.ephemeral.get("random_password", {})
    assert "password" not in cfg.resource("google_sql_user", "owner")
    version = cfg.resource("google_secret_manager_secret_version", "db_password")
    assert "secret_data" not in version
    assert version["secret_data_wo"] == "${ephemeral.random_password.db.result}"


def test_secret_replication_is_automatic(cfg: Config) -> None:
    secret = cfg.resource("google_secret_manager_secret", "db_password")
    assert "auto" in one(secret["replication"])


def test_source_bucket_is_private_and_versioned(cfg: Config) -> None:
    bucket = cfg.resource("google_storage_bucket", "source")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert one(bucket["versioning"])["enabled"] is True


# ---------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------


def test_log_metrics_read_the_run_finished_line(cfg: Config) -> None:
    assert 'jsonPayload.event=\\"run_finished\\"' in refs(cfg.locals["run_finished_filter"])
    runs = cfg.resource("google_logging_metric", "runs")
    assert runs["label_extractors"]["status"] == "EXTRACT(jsonPayload.status)"
    values = cfg.resource("google_logging_metric", "run_value")
    assert values["for_each"] == "${local.run_value_metrics}"
    # Each distribution extracts the run_finished field it is named after.
    assert values["value_extractor"] == "EXTRACT(jsonPayload.${each.key})"
    assert values["name"] == "${local.metric_prefix}_${each.key}"
    assert values["filter"] == runs["filter"] == "${local.run_finished_filter}"
    fields = set(cfg.locals["run_value_metrics"])
    per_run = {"rows_inserted", "rows_updated", "rows_deleted", "rows_skipped", "rows_degraded", "rows_read"}
    assert fields >= per_run | {"lag_seconds", "bigquery_bytes_billed"}


# Every way the monitoring config names a log-based metric: the filter form
# (logging.googleapis.com/user/NAME) and the PromQL form (logging_googleapis_com:user_NAME[_sum|_count|_bucket]).
_METRIC_USE = re.compile(
    r"(?:logging\.googleapis\.com/user/|logging_googleapis_com:user_)"
    r"(?:\$\{google_logging_metric\.(?P<name>\w+)(?:\[(?:\"(?P<key>\w+)\"|(?P<var>\w+))\])?\.name\}|(?P<literal>[\w.]+))"
    r"(?P<suffix>_sum|_count|_bucket)?"
)


def _metric_uses(text: str) -> list[re.Match[str]]:
    # Heredocs and json.dumps both escape quotes; no metric reference contains a backslash.
    return list(_METRIC_USE.finditer(text.replace("\\", "")))


def _check_metric_use(cfg: Config, use: re.Match[str], where: str) -> dict[str, Any]:
    assert use["literal"] is None, f"{where}: metric {use['literal']!r} is a literal, not a reference to a google_logging_metric"
    metric = cfg.resource("google_logging_metric", use["name"])
    if use["key"] is not None:
        assert metric.get("for_each") == "${local.run_value_metrics}", where
        assert use["key"] in cfg.locals["run_value_metrics"], f"{where}: no run_value metric {use['key']!r}"
    is_distribution = one(metric["metric_descriptor"])["value_type"] == "DISTRIBUTION"
    # Distributions are only readable through their _sum/_count/_bucket series in PromQL.
    if "logging_googleapis_com" in use.group(0):
        assert bool(use["suffix"]) == is_distribution, f"{where}: {use.group(0)}"
    return metric


# Metrics GCP writes itself, as its metric lists name them (cloud.google.com/monitoring/api/metrics_gcp):
# type -> (monitored resource, value type, the resource label that picks our series).
GCP_METRICS = {
    # Pub/Sub: "Number of unacknowledged messages (a.k.a. backlog messages) in a subscription"; GAUGE INT64.
    "pubsub.googleapis.com/subscription/num_undelivered_messages": ("pubsub_subscription", "INT64", "subscription_id"),
    # Pub/Sub: push attempts by response_class (ack, deadline_exceeded, internal, invalid,
    # remote_server_4xx, remote_server_5xx, unreachable); DELTA INT64. Push troubleshooting:
    # "a response_class other than ack indicates that the push endpoint is returning errors".
    "pubsub.googleapis.com/subscription/push_request_count": ("pubsub_subscription", "INT64", "subscription_id"),
    # Cloud Run (a 2nd-gen function is a Cloud Run service): memory used / limit, per instance; DELTA DISTRIBUTION.
    "run.googleapis.com/container/memory/utilizations": ("cloud_run_revision", "DISTRIBUTION", "service_name"),
}
_FILTER_METRIC = re.compile(r'metric\.type="(?P<type>[^"]+)"')


def _condition(policy: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((kind, body),) = ((k, one(v)) for k, v in one(policy["conditions"]).items() if k.startswith("condition_"))
    return kind, body


def _filter_text(cfg: Config, text: str) -> str:
    """A filter with the locals it names spelled out (one level, as monitoring.tf writes them)."""
    for name in re.findall(r"\$\{local\.(\w+)\}", text):
        text = text.replace("${local." + name + "}", str(cfg.locals[name]))
    return text.replace('\\"', '"')


def _gcp_metric(cfg: Config, policy: dict[str, Any]) -> tuple[str, str]:
    """(metric type, filter) of a threshold condition on a metric GCP provides."""
    _, body = _condition(policy)
    text = _filter_text(cfg, body["filter"])
    (metric_type,) = _FILTER_METRIC.findall(text)
    assert metric_type in GCP_METRICS, f"{metric_type} is neither a declared log metric nor a known GCP metric"
    resource, _, label = GCP_METRICS[metric_type]
    assert f'resource.type="{resource}"' in text, text
    assert f"resource.label.{label}=" in text, f"the alert must pick our own series by {label}: {text}"
    return metric_type, text


LOG_METRIC_ALERTS = {
    "run_failed",
    "sync_stale",
    "rejected_rate",
    "config_error",
    "source_unavailable",
    "error_event",
    "deletes_held",
}
GCP_METRIC_ALERTS = {"dead_letters", "push_failures", "memory_high"}


def test_every_alert_metric_is_declared_or_provided_by_gcp(cfg: Config) -> None:
    policies = cfg.resources["google_monitoring_alert_policy"]
    assert set(policies) == LOG_METRIC_ALERTS | GCP_METRIC_ALERTS
    for name in LOG_METRIC_ALERTS:
        uses = _metric_uses(refs(policies[name]["conditions"]))
        assert uses, f"alert {name} names no log-based metric"
        for use in uses:
            metric = _check_metric_use(cfg, use, f"alert {name}")
            if use["name"] == "runs":
                # The status label the alert filters on is one the metric extracts.
                assert "status" in metric["label_extractors"]
    for name in GCP_METRIC_ALERTS:
        assert not _metric_uses(refs(policies[name]["conditions"])), name
        _gcp_metric(cfg, policies[name])


def test_alerts_for_every_silent_stop(cfg: Config) -> None:
    policies = cfg.resources["google_monitoring_alert_policy"]
    # Dead letters waiting: the inspection subscription on the dead-letter topic, above 0.
    metric, text = _gcp_metric(cfg, policies["dead_letters"])
    assert metric.endswith("/num_undelivered_messages")
    assert "google_pubsub_subscription.dead_letter_inspect.name" in text
    _, body = _condition(policies["dead_letters"])
    assert (body["comparison"], body["threshold_value"]) == ("COMPARISON_GT", 0)
    # Push answers other than ack, on the push subscription, sustained for the variable's minutes.
    metric, text = _gcp_metric(cfg, policies["push_failures"])
    assert metric.endswith("/push_request_count")
    assert "google_pubsub_subscription.push.name" in text
    assert 'metric.label.response_class!="ack"' in text
    _, body = _condition(policies["push_failures"])
    assert body["duration"] == "${var.alert_push_failure_minutes * 60}s"
    # Memory: the function's own Cloud Run service, a high percentile against a fraction of 1.
    metric, text = _gcp_metric(cfg, policies["memory_high"])
    assert metric.endswith("/memory/utilizations")
    assert "google_cloudfunctions2_function.sync.name" in text
    _, body = _condition(policies["memory_high"])
    assert body["threshold_value"] == "${var.alert_memory_utilization}"
    assert one(body["aggregations"])["per_series_aligner"].startswith("ALIGN_PERCENTILE_")
    # Configuration errors: the function's lines at CRITICAL, which is where main.py logs them.
    config = cfg.resource("google_logging_metric", "config_errors")
    assert config["filter"] == "${local.config_errors_filter}"
    assert cfg.locals["config_errors_filter"] == "${local.function_log_filter} AND severity=CRITICAL"
    assert "log.critical(" in (ROOT / "main.py").read_text()
    assert "config_errors.name" in refs(policies["config_error"]["conditions"])


def test_alert_documentation_says_what_and_the_first_command(cfg: Config) -> None:
    for name, policy in cfg.resources["google_monitoring_alert_policy"].items():
        if name in {"run_failed", "sync_stale", "rejected_rate"}:
            continue  # the runbook's "Where to look" covers these
        content = one(policy["documentation"])["content"]
        assert "First command: `" in content, name
        assert "terraform/README.md" in content or "terraform.tfvars" in content, name


def test_alerts_wait_for_their_metrics(cfg: Config) -> None:
    sleep = cfg.resource("time_sleep", "log_metrics")
    # "could take up to 10 minutes to become available" (the API's 404; provider issue #11102).
    assert int(sleep["create_duration"].rstrip("s")) >= 600
    trigger = sleep["triggers"]["metrics"]
    # Every log-based metric feeds the wait, so a new one delays the alerts again.
    for metric in cfg.resources["google_logging_metric"]:
        assert f"google_logging_metric.{metric}" in trigger, metric
    for name, policy in cfg.resources["google_monitoring_alert_policy"].items():
        if name in LOG_METRIC_ALERTS:
            assert policy["depends_on"] == ["${time_sleep.log_metrics}"], name
        else:
            # GCP's own metrics exist before the apply; waiting for them would only slow it.
            assert "depends_on" not in policy, name


def test_alert_policies(cfg: Config) -> None:
    policies = cfg.resources["google_monitoring_alert_policy"]
    for name, policy in policies.items():
        assert policy["notification_channels"] == "${var.notification_channels}", name
        assert one(policy["documentation"])["content"].strip(), name
    failed = one(one(policies["run_failed"]["conditions"])["condition_threshold"])
    assert 'metric.label.status=\\"failed\\"' in refs(failed["filter"])
    # Heredocs come back with their quotes escaped.
    stale = one(one(policies["sync_stale"]["conditions"])["condition_prometheus_query_language"])["query"]
    stale = stale.replace('\\"', '"')
    assert 'status="success"' in stale
    assert "${var.alert_stale_after_minutes}m" in stale
    rejected = one(one(policies["rejected_rate"]["conditions"])["condition_prometheus_query_language"])["query"]
    rejected = rejected.replace('\\"', '"')
    assert 'run_value["rows_skipped"].name}_sum' in rejected
    assert 'run_value["rows_read"].name}_sum' in rejected
    assert "> ${var.alert_rejected_rate_threshold}" in rejected


def _promql_name(metric_type: str) -> str:
    """Cloud Monitoring's PromQL name for a metric type: dots to underscores, the first slash a colon."""
    domain, _, path = metric_type.partition("/")
    return domain.replace(".", "_") + ":" + path.replace("/", "_").replace(".", "_")


def test_dashboard_shows_the_series_each_silent_stop_alert_reads(cfg: Config) -> None:
    queries = cfg.locals["silent_stop_queries"]
    tiles = refs(cfg.locals["dashboard_tiles"])
    for key in queries:
        assert f'local.silent_stop_queries[\\"{key}\\"]' in tiles, key
    charted = refs(queries).replace("\\", "")
    policies = cfg.resources["google_monitoring_alert_policy"]
    for name in GCP_METRIC_ALERTS:
        metric, text = _gcp_metric(cfg, policies[name])
        assert _promql_name(metric) in charted, f"alert {name}: {metric} is not on the dashboard"
        # The same series: the same subscription or service as the alert's filter.
        (target,) = re.findall(r"\$\{(google_\w+\.\w+)\.name\}", text)
        assert target in charted, f"alert {name} reads {target}, the dashboard does not"
    for use in _metric_uses(refs(queries)):
        metric = _check_metric_use(cfg, use, "dashboard silent_stop_queries")
        assert metric is cfg.resource("google_logging_metric", "config_errors")


def test_dashboard_charts_declared_metrics(cfg: Config) -> None:
    dashboard = cfg.resource("google_monitoring_dashboard", "sync")["dashboard_json"]
    assert dashboard.startswith("${jsonencode(")
    per_run = cfg.locals["per_run"]
    # The per-run expression divides a metric's _sum by its _count over the same window.
    uses = _metric_uses(per_run)
    assert {u["suffix"] for u in uses} == {"_sum", "_count"}
    for use in uses:
        assert use["var"] == "key", use.group(0)
        _check_metric_use(cfg, use, "dashboard per_run")
    for use in _metric_uses(refs(cfg.locals["runs_by_status"])):
        _check_metric_use(cfg, use, "dashboard runs_by_status")
    tiles = refs(cfg.locals["dashboard_tiles"])
    # Each quantity the runbook promises is charted.
    for key in (
        "lag_seconds",
        "rows_inserted",
        "rows_updated",
        "rows_deleted",
        "rows_skipped",
        "rows_degraded",
        "bigquery_bytes_billed",
    ):
        assert f'local.per_run[\\"{key}\\"]' in tiles, key
    assert "local.runs_by_status" in tiles
    assert "google_monitoring_alert_policy.run_failed.name" in dashboard


# ---------------------------------------------------------------------------
# Function source archive
# ---------------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Terraform fileset() semantics (doublestar): ``**/`` spans zero or more
    directories, ``*`` and ``?`` never cross ``/``."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _fileset(root: Path, patterns: list[str]) -> list[str]:
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    regexes = [_glob_regex(p) for p in patterns]
    return sorted({f for f in files if any(r.match(f) for r in regexes)})


def _build_zip(root: Path, names: list[str], out: Path) -> list[str]:
    """Zip as archive_file does with one `source` block per file."""
    with zipfile.ZipFile(out, "w") as zf:
        for name in names:
            zf.writestr(name, (root / name).read_text(encoding="utf-8"))
    with zipfile.ZipFile(out) as zf:
        return sorted(zf.namelist())


def test_archive_is_built_from_the_source_patterns(cfg: Config) -> None:
    assert cfg.locals["repo_root"] == '${abspath("${path.module}/..")}'
    assert "fileset(local.repo_root, pattern)" in cfg.locals["function_source_files"]
    assert "for pattern in local.function_source_patterns" in cfg.locals["function_source_files"]
    archive = cfg.data["archive_file"]["source"]
    assert archive["type"] == "zip"
    assert "source_dir" not in archive
    assert "source_file" not in archive
    dynamic = one(archive["dynamic"])["source"]
    assert dynamic["for_each"] == "${local.function_source_files}"
    content = one(dynamic["content"])
    assert content["filename"] == "${source.value}"
    assert content["content"] == '${file("${local.repo_root}/${source.value}")}'
    precondition = one(one(archive["lifecycle"])["precondition"])["condition"]
    assert '"main.py"' in precondition
    assert '"requirements.txt"' in precondition
    # The zip that is uploaded is the zip the function builds from.
    obj = cfg.resource("google_storage_bucket_object", "source")
    assert obj["source"] == "${data.archive_file.source.output_path}"
    assert "output_md5" in obj["name"]
    storage = one(one(one(cfg.resource("google_cloudfunctions2_function", "sync")["build_config"])["source"])["storage_source"])
    assert storage["object"] == "${google_storage_bucket_object.source.name}"


def test_source_patterns_select_exactly_the_runtime_files(tmp_path: Path, cfg: Config) -> None:
    """Against a known tree, so a broadened pattern fails even if the repo is clean."""
    tree = {
        "main.py": True,
        "requirements.txt": True,
        "sync/__init__.py": True,
        "sync/core/config.py": True,
        "sync/sub/deep/module.py": True,
        "sync/postgres/migrations/0001_init.sql": True,
        "sync/__pycache__/config.cpython-311.pyc": False,
        "sync/notes.md": False,
        "requirements-dev.txt": False,
        "conftest.py": False,
        "tests/test_x.py": False,
        "tests/sync/test_y.py": False,
        "bench/bench_copy.py": False,
        "terraform/main.tf": False,
        ".venv/lib/python3.11/site-packages/sync/x.py": False,
        ".venv-checkov/lib/x.py": False,
        "scripts/check_terraform.sh": False,
        "other/sync/x.py": False,
    }
    for name in tree:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    selected = _fileset(tmp_path, cfg.locals["function_source_patterns"])
    assert selected == sorted(name for name, wanted in tree.items() if wanted)


def test_repo_archive_contains_exactly_main_requirements_and_sync(tmp_path: Path, cfg: Config) -> None:
    names = _fileset(ROOT, cfg.locals["function_source_patterns"])
    zipped = _build_zip(ROOT, names, tmp_path / "source.zip")
    # Independently: every .py/.sql under sync/ outside __pycache__, plus the two root files.
    sync_files = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "sync").rglob("*")
        if p.is_file() and p.suffix in {".py", ".sql"} and "__pycache__" not in p.parts
    }
    assert zipped == sorted({"main.py", "requirements.txt"} | sync_files)
    assert "sync/core/config.py" in zipped
    assert all(n in {"main.py", "requirements.txt"} or n.startswith("sync/") for n in zipped)
    migrations = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sync" / "postgres" / "migrations").glob("*.sql")}
    assert migrations <= set(zipped)


def test_memory_model_is_the_codes_and_plan_refuses_what_the_function_would(cfg: Config, tmp_path: Path) -> None:
    import shutil
    import subprocess

    from sync.core import memory
    from sync.core.config import Settings
    from sync.core.errors import ConfigurationError

    common = cfg.locals["function_env_common"]
    assert common["SYNC_FUNCTION_MEMORY"] == "${var.function_memory}"
    assert (cfg.locals["memory_base_mib"], cfg.locals["memory_mib_per_row"], cfg.locals["memory_headroom"]) == (
        memory.BASE_MIB,
        memory.MIB_PER_ROW,
        memory.HEADROOM,
    )
    checks = [
        p["condition"]
        for block in cfg.resource("google_cloudfunctions2_function", "sync")["lifecycle"]
        for p in block.get("precondition", [])
    ]
    assert "${local.page_peak_mib * local.memory_headroom <= local.function_memory_mib}" in checks

    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary to evaluate the locals with")
    # The memory locals exactly as main.tf writes them, evaluated by terraform console (no provider needed).
    names = (
        "memory_base_mib",
        "memory_mib_per_row",
        "memory_headroom",
        "memory_unit_bytes",
        "function_memory_mib",
        "page_peak_mib",
    )
    lines = [line for line in (TF_DIR / "main.tf").read_text().splitlines() if line.strip().split(" ")[0] in names]
    assert len(lines) == len(names)
    (tmp_path / "main.tf").write_text(
        'variable "function_memory" {\n  type = string\n}\nvariable "page_size" {\n  type = number\n}\n'
        "locals {\n" + "\n".join(lines) + "\n}\n"
    )
    cases = [("256M", 2000), ("256M", 3687), ("256M", 3688), ("512Mi", 17_000), ("1Gi", 45_280), ("1Gi", 45_281), ("2Gi", 50_000)]
    answers = []
    for memory_text, page_size in cases:
        out = subprocess.run(
            [terraform, f"-chdir={tmp_path}", "console", f"-var=function_memory={memory_text}", f"-var=page_size={page_size}"],
            input="local.page_peak_mib * local.memory_headroom <= local.function_memory_mib\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={"TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin"},
        )
        plan_accepts = out.stdout.strip() == "true"
        try:
            Settings.from_env(
                {
                    "BIGQUERY_PROJECT": "my-project-1",
                    "DATABASE_URL": "postgresql://u@h/d",
                    "SYNC_FUNCTION_MEMORY": memory_text,
                    "SYNC_PAGE_SIZE": str(page_size),
                }
            )
            code_accepts = True
        except ConfigurationError:
            code_accepts = False
        answers.append((memory_text, page_size, plan_accepts, code_accepts))
    assert [(m, p, plan) for m, p, plan, _ in answers] == [(m, p, code) for m, p, _, code in answers]
    # Both sides of each boundary are among the cases.
    assert {plan for _, _, plan, _ in answers} == {True, False}


def test_held_deletes_alert_on_the_line_the_guard_logs(cfg: Config) -> None:
    metric = cfg.resource("google_logging_metric", "deletes_held")
    assert metric["filter"] == "${local.deletes_held_filter}"
    assert (
        cfg.locals["deletes_held_filter"].replace('\\"', '"')
        == '${local.function_log_filter} AND jsonPayload.event="deletes_held"'
    )
    assert metric["label_extractors"] == {"kind": "EXTRACT(jsonPayload.kind)"}
    # The event and field the metric reads are the ones sync/postgres/guard.py logs at ERROR.
    guard = (ROOT / "sync" / "postgres" / "guard.py").read_text()
    assert 'log.error(message, *args, extra={"event": "deletes_held", **fields})' in guard
    assert '"kind": verdict.kind.value' in guard
    policy = cfg.resources["google_monitoring_alert_policy"]["deletes_held"]
    assert "deletes_held.name" in refs(policy["conditions"])
    _, body = _condition(policy)
    assert (body["comparison"], body["threshold_value"]) == ("COMPARISON_GT", 0)


# ---------------------------------------------------------------------------
# Fivetran webhook (webhook.tf)
# ---------------------------------------------------------------------------


def test_webhook_function_is_public_and_signature_checked(cfg: Config) -> None:
    fn = cfg.resource("google_cloudfunctions2_function", "webhook")
    assert fn["count"] == "${local.webhook_enabled ? 1 : 0}"
    assert one(fn["build_config"])["entry_point"] == "fivetran_webhook"
    # The same source zip as the sync function: one build input, two entry points.
    sync_source = one(cfg.resource("google_cloudfunctions2_function", "sync")["build_config"])["source"]
    assert one(fn["build_config"])["source"] == sync_source
    service = one(fn["service_config"])
    assert service["ingress_settings"] == "ALLOW_ALL"  # Fivetran calls from the internet
    assert service["environment_variables"] == "${local.webhook_env}"
    public = cfg.resource("google_cloud_run_v2_service_iam_member", "webhook_public")
    assert public["member"] == "allUsers"
    assert public["role"] == "roles/run.invoker"
    assert "webhook[0].name" in public["name"]


def test_webhook_env_adds_only_known_webhook_variables(cfg: Config) -> None:
    env = refs(cfg.locals["webhook_env"])
    assert "local.function_env" in env  # the same database and topic settings as the sync
    names = set(re.findall(r"(FIVETRAN_[A-Z_]+)", env))
    assert names == {
        "FIVETRAN_WEBHOOK_SECRET",
        "FIVETRAN_WEBHOOK_MAX_AGE_SECONDS",
        "FIVETRAN_WEBHOOK_CONNECTORS",
        "FIVETRAN_WEBHOOK_GROUPS",
    }
    assert names <= KNOWN_ENV_VARS
    assert "google_secret_manager_secret.webhook[0].id" in env
    assert "/versions/latest" in env


def test_webhook_secret_is_generated_stored_and_handed_to_fivetran(cfg: Config) -> None:
    version = cfg.resource("google_secret_manager_secret_version", "webhook")
    assert version["secret_data_wo"] == "${random_password.webhook[0].result}"
    assert "secret_data" not in version
    hook = cfg.resource("fivetran_webhook", "sync_end")
    assert hook["secret"] == "${random_password.webhook[0].result}"
    assert hook["events"] == ["sync_end"]
    assert "google_cloudfunctions2_function.webhook[0].url" in hook["url"]


def test_fivetran_webhook_is_opt_in(cfg: Config) -> None:
    assert cfg.variables["fivetran_webhook_enabled"]["default"] is False
    assert cfg.resource("fivetran_webhook", "sync_end")["count"] == "${local.fivetran_webhook_enabled ? 1 : 0}"
    assert cfg.locals["fivetran_webhook_enabled"] == "${var.webhook_enabled && var.fivetran_webhook_enabled}"
    assert "webhook_url" in cfg.outputs


# ---------------------------------------------------------------------------
# Private connectivity (network.tf) and the created instance's version
# ---------------------------------------------------------------------------


def test_db_ip_type_is_the_connectivity_terraform_builds(cfg: Config) -> None:
    assert cfg.locals["function_env_common"]["DB_IP_TYPE"] == "${var.sql_connectivity}"
    condition = one(cfg.variables["sql_connectivity"]["validation"])["condition"]
    assert set(re.findall(r'"(\w+)"', condition)) == {t.value for t in IpType}, "the variable and DB_IP_TYPE accept the same"
    ip = one(one(cfg.resource("google_sql_database_instance", "created")["settings"])["ip_configuration"])
    # A created instance has exactly the path chosen: no public IP for private or psc.
    assert ip["ipv4_enabled"] == '${var.sql_connectivity == "public"}'
    assert "local.vpc_network" in ip["private_network"]
    assert "local.private_services_range" in ip["allocated_ip_range"]
    assert ip["ssl_mode"] == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    (psc,) = [d["psc_config"] for d in ip["dynamic"]]
    assert psc["for_each"] == '${var.sql_connectivity == "psc" ? [1] : []}'
    # The function reaches a private address only through Direct VPC egress, and only for private ranges.
    service = one(cfg.resource("google_cloudfunctions2_function", "sync")["service_config"])
    assert service["direct_vpc_egress"] == '${local.private_connectivity ? "VPC_EGRESS_PRIVATE_RANGES_ONLY" : null}'
    (interface,) = [d["direct_vpc_network_interface"] for d in service["dynamic"]]
    assert one(interface["content"]) == {"network": "${local.vpc_network}", "subnetwork": "${local.vpc_subnetwork}"}
    assert "vpc_connector" not in service, "Direct VPC egress and a connector are mutually exclusive"


def test_the_private_pieces_exist_only_with_the_instance_they_serve(cfg: Config) -> None:
    counts = {
        ("google_compute_global_address", "private_services"): "local.create_private_services_access",
        ("google_service_networking_connection", "private_services"): "local.create_private_services_access",
        ("google_compute_address", "psc"): "local.create_psc_endpoint",
        ("google_compute_forwarding_rule", "psc"): "local.create_psc_endpoint",
        ("google_dns_managed_zone", "psc"): "local.create_psc_endpoint",
        ("google_dns_record_set", "psc"): "local.create_psc_endpoint",
        ("google_compute_network", "sync"): "local.create_network",
        ("google_compute_subnetwork", "egress"): "local.create_subnetwork",
    }
    for (rtype, name), flag in counts.items():
        assert cfg.resource(rtype, name)["count"] == f"${{{flag} ? 1 : 0}}", (rtype, name)
    assert "var.create_sql_instance" in cfg.locals["create_private_services_access"]
    assert "var.create_sql_instance" in cfg.locals["create_psc_endpoint"]
    # The instance takes its address from the peering's range, so the peering comes first.
    assert (
        "${google_service_networking_connection.private_services}"
        in cfg.resource("google_sql_database_instance", "created")["depends_on"]
    )
    # The connector dials the instance's DNS name for PSC: the record maps exactly that name to the endpoint.
    record = cfg.resource("google_dns_record_set", "psc")
    assert record["name"] == "${google_sql_database_instance.created[0].dns_name}"
    assert record["rrdatas"] == ["${google_compute_address.psc[0].address}"]
    assert cfg.resource("google_compute_forwarding_rule", "psc")["target"] == (
        "${google_sql_database_instance.created[0].psc_service_attachment_link}"
    )


def test_the_created_instance_runs_the_chosen_postgres_version(cfg: Config) -> None:
    assert cfg.resource("google_sql_database_instance", "created")["database_version"] == "${var.postgres_version}"
    assert cfg.variables["postgres_version"]["default"] == "POSTGRES_18"


def _variables_module(tmp_path: Path, names: tuple[str, ...]) -> Path:
    """The named variable blocks exactly as variables.tf writes them, as a module of their own."""
    text = (TF_DIR / "variables.tf").read_text()
    blocks = [re.search(rf'^variable "{n}" \{{.*?^\}}$', text, re.MULTILINE | re.DOTALL) for n in names]
    assert all(blocks), names
    (tmp_path / "variables.tf").write_text("\n\n".join(b.group(0) for b in blocks if b) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        ({}, True),  # the defaults: public, the newest GA major
        ({"sql_connectivity": "psc", "postgres_version": "POSTGRES_15"}, True),
        ({"sql_connectivity": "vpc"}, False),  # not a connectivity the code knows
        ({"postgres_version": "POSTGRES_14"}, False),  # a major the sync is not tested on
        ({"egress_subnet_cidr": "10.8.0.0/28"}, False),  # smaller than the /26 Direct VPC egress asks for
        ({"egress_subnet_cidr": "10.8.0.0"}, False),
        ({"vpc_subnetwork": "projects/acme-data/regions/europe-west1/subnetworks/egress"}, False),  # no vpc_network
        (
            {
                "vpc_network": "projects/acme-data/global/networks/shared",
                "vpc_subnetwork": "projects/acme-data/regions/europe-west1/subnetworks/egress",
            },
            True,
        ),
        ({"private_services_prefix_length": 25}, False),  # Cloud SQL needs at least a /24
    ],
)
def test_connectivity_and_version_variables_refuse_what_cannot_work(
    tmp_path: Path, values: dict[str, Any], accepted: bool
) -> None:
    import shutil
    import subprocess

    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary to evaluate the validations with")
    names = (
        "sql_connectivity",
        "vpc_network",
        "vpc_subnetwork",
        "egress_subnet_cidr",
        "private_services_prefix_length",
        "postgres_version",
    )
    module = _variables_module(tmp_path, names)
    result = subprocess.run(
        [terraform, f"-chdir={module}", "console", *(f"-var={k}={v}" for k, v in values.items())],
        input="var.sql_connectivity\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin"},
    )
    # console reports a refused value and still exits 0: read what it says.
    refused = "Invalid value for variable" in result.stdout + result.stderr
    assert refused is not accepted, result.stdout + result.stderr
    if accepted:
        assert result.stdout.strip().strip('"') == values.get("sql_connectivity", "public")


def test_every_depends_on_names_a_declared_resource(cfg: Config) -> None:
    """A resource renamed or removed in one file must not stay behind in another's depends_on."""
    declared = {f"{rtype}.{name}" for rtype, name, _ in cfg.all_resources()}
    for rtype, name, body in cfg.all_resources():
        for ref in body.get("depends_on", []):
            target = ref.removeprefix("${").removesuffix("}")
            if not target.startswith(("data.", "module.")):
                assert target in declared, f"{rtype}.{name} depends on {target}, which no file declares"
