"""The offline provider-schema check (scripts/check_provider_schema.py) against the real schemas.

The schemas come from the CDK provider packages on PyPI (downloaded once, cached in .cache/);
each mutation below is one mistake `terraform validate` would report, injected into a copy of
terraform/, and must be reported on both provider sets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
sys.path.insert(0, str(ROOT / "scripts"))

import check_provider_schema as checker  # noqa: E402
import provider_schema  # noqa: E402


@pytest.fixture(scope="module")
def schema_sets() -> dict[str, dict[str, dict[str, Any]]]:
    return {name: {p.provider: provider_schema.load(p) for p in pkgs} for name, pkgs in provider_schema.SETS.items()}


def _mutated(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(TF_DIR, copy, ignore=shutil.ignore_patterns(".terraform", ".build"))
    text = (copy / file).read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{file} no longer contains {old!r}; update the mutation"
    (copy / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    return copy


def test_the_configuration_passes_on_every_set(schema_sets):
    cfg = checker.load_config(TF_DIR)
    assert len(cfg.blocks["resource"]) > 30, "parsed almost nothing"
    for name, schemas in schema_sets.items():
        problems, notes = checker.check(cfg, schemas)
        assert problems == [], f"{name}: {problems}"
        # The only things a set may be unable to verify are an ephemeral block and the opt-in
        # fivetran_webhook (no offline schema of that provider exists), and it says so.
        assert all("predates ephemeral resources" in n or "no offline schema for the fivetran" in n for n in notes), notes
        assert any("fivetran_webhook.sync_end" in n for n in notes), notes


def test_sets_cover_the_pinned_range():
    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    with (TF_DIR / "versions.tf").open(encoding="utf-8") as fh:
        required = hcl2.load(fh, serialization_options=options)["terraform"][0]["required_providers"][0]
    floors = {name: re.search(r">=\s*([\d.]+)", spec["version"]).group(1) for name, spec in required.items()}
    # The fivetran provider has no offline schema package: pinned, but outside the sets.
    assert floors.pop("fivetran") == "1.0.0"
    lowest = {p.provider: p.provider_version for p in provider_schema.SETS["lowest"]}
    # The "lowest" set is exactly the floor of every provider versions.tf requires.
    assert lowest == floors
    newest = {p.provider: p.provider_version for p in provider_schema.SETS["newest"]}
    assert set(newest) == set(floors)
    assert newest["google"].startswith("7."), "the newest set must be the newest google 7.x (the pin stops before 8)"


def test_cli_catches_an_injected_typo_on_both_sets(tmp_path):
    broken = _mutated(tmp_path, "function.tf", "max_instance_count ", "max_instance_cont ")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_provider_schema.py"), str(broken)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert len(errors) == 2, result.stdout  # one per provider set
    for line in errors:
        assert "service_config: unknown argument or block 'max_instance_cont' (did you mean 'max_instance_count'?)" in line


def test_cli_passes_on_the_repository():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_provider_schema.py"), str(TF_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("0 problem(s)") == len(provider_schema.SETS)


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        # A resource type the provider does not have.
        (
            "pubsub.tf",
            'resource "google_pubsub_subscription" "push"',
            'resource "google_pubsub_subscriptions" "push"',
            "unknown resource type 'google_pubsub_subscriptions'",
        ),
        # A data source type.
        ("main.tf", 'data "google_project" "this"', 'data "google_projects_x" "this"', "unknown data type 'google_projects_x'"),
        # An argument at the wrong level: ack_deadline_seconds belongs to the subscription, not push_config.
        (
            "pubsub.tf",
            "    push_endpoint = google_cloudfunctions2_function.sync.service_config[0].uri",
            "    ack_deadline_seconds = 10\n    push_endpoint = google_cloudfunctions2_function.sync.service_config[0].uri",
            "push.push_config: unknown argument or block 'ack_deadline_seconds'",
        ),
        # A nested block that does not exist.
        ("pubsub.tf", "  retry_policy {", "  retry_polcy {", "unknown argument or block 'retry_polcy'"),
        # Content of a dynamic block is checked against the block it generates.
        (
            "function.tf",
            "      filename = source.value",
            "      file_name = source.value",
            "source.source: unknown argument or block 'file_name'",
        ),
        # The label of a dynamic block must be a block.
        ("function.tf", 'dynamic "source" {', 'dynamic "sources" {', "unknown block 'sources' in dynamic"),
        # A required argument left out.
        (
            "pubsub.tf",
            "  topic = google_pubsub_topic.sync.id\n",
            "",
            "google_pubsub_subscription.push: required 'topic' is not set",
        ),
        # A computed-only attribute cannot be set.
        (
            "function.tf",
            "    max_instance_count               = 1",
            '    uri = "https://x"\n    max_instance_count = 1',
            "service_config: 'uri' is computed-only and cannot be set",
        ),
        # An enum literal outside the documented values.
        ("function.tf", '"ALLOW_INTERNAL_ONLY"', '"INTERNAL_ONLY"', "ingress_settings = 'INTERNAL_ONLY' is not one of"),
        # Documented values can sit deep in the description (the jsii remarks, not the summary).
        ("monitoring.tf", '"ALIGN_SUM"', '"ALIGN_SUMS"', "per_series_aligner = 'ALIGN_SUMS' is not one of"),
        # A reference to an attribute the resource does not have, in a nested block.
        (
            "pubsub.tf",
            "push_endpoint = google_cloudfunctions2_function.sync.service_config[0].uri",
            "push_endpoint = google_cloudfunctions2_function.sync.service_config[0].url",
            "no attribute 'url' (did you mean 'uri'?)",
        ),
        # A reference to a top-level attribute that does not exist.
        (
            "iam.tf",
            "member  = google_service_account.build.member",
            "member  = google_service_account.build.members",
            "reference google_service_account.build.members: no attribute 'members'",
        ),
        # A reference to a resource that is not declared.
        (
            "outputs.tf",
            "google_pubsub_topic.dead_letter.id",
            "google_pubsub_topic.dead_letters.id",
            "reference google_pubsub_topic.dead_letters: no such resource is declared",
        ),
        # A variable that is not declared.
        (
            "pubsub.tf",
            "= var.max_delivery_attempts",
            "= var.max_delivery_attempt",
            "reference var.max_delivery_attempt: not declared",
        ),
        # A provider argument.
        ("versions.tf", "default_labels =", "default_label =", "provider google: unknown argument or block 'default_label'"),
        # The private connectivity pieces (network.tf, function.tf, sql.tf) are checked like the rest.
        (
            "function.tf",
            'direct_vpc_egress = local.private_connectivity ? "VPC_EGRESS_PRIVATE_RANGES_ONLY" : null',
            'direct_vpc_egres = local.private_connectivity ? "VPC_EGRESS_PRIVATE_RANGES_ONLY" : null',
            "service_config: unknown argument or block 'direct_vpc_egres'",
        ),
        (
            "function.tf",
            "subnetwork = local.vpc_subnetwork",
            "subnet = local.vpc_subnetwork",
            "unknown argument or block 'subnet'",
        ),
        ("sql.tf", "psc_enabled               = true", "psc_enable = true", "unknown argument or block 'psc_enable'"),
        ("sql.tf", "      private_network    =", "      private_net =", "unknown argument or block 'private_net'"),
        (
            "network.tf",
            "reserved_peering_ranges = [",
            "reserved_ranges = [",
            "google_service_networking_connection.private_services: unknown argument or block 'reserved_ranges'",
        ),
        ("network.tf", '"VPC_PEERING"', '"VPC_PEERING"\n  address_kind = "INTERNAL"', "unknown argument or block 'address_kind'"),
        # "" is accepted only where the provider documents it (a PSC forwarding rule), not for every enum.
        ("function.tf", '"ALLOW_INTERNAL_ONLY"', '""', "ingress_settings = '' is not one of"),
        (
            "network.tf",
            'load_balancing_scheme = ""',
            'load_balancing_scheme = "PSC"',
            "load_balancing_scheme = 'PSC' is not one of",
        ),
        (
            "network.tf",
            "target      = google_sql_database_instance.created[0].psc_service_attachment_link",
            "target      = google_sql_database_instance.created[0].psc_attachment_link",
            "no attribute 'psc_attachment_link'",
        ),
        # The time provider is checked too.
        (
            "iam.tf",
            'create_duration = "420s"',
            'create_duration_s = "420s"',
            "time_sleep.build_grants: unknown argument or block 'create_duration_s'",
        ),
    ],
)
def test_each_kind_of_mistake_is_reported_on_both_sets(tmp_path, schema_sets, file, old, new, expected):
    cfg = checker.load_config(_mutated(tmp_path, file, old, new))
    for name, schemas in schema_sets.items():
        problems, _ = checker.check(cfg, schemas)
        assert any(expected in p for p in problems), f"{name}: {expected!r} not in {problems}"
