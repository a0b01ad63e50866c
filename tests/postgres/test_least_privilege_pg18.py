"""The cluster tests of test_least_privilege.py on PostgreSQL 18, a file of its own so that
pytest-xdist (one module per worker) runs the majors side by side."""

import pytest
from test_least_privilege import (
    _close_connector,
    database,
    instance,
    test_a_deployed_database_upgrades_in_place,
    test_the_next_run_of_the_job_grants_what_a_later_migration_added,
    test_the_runtime_login_syncs_and_can_do_nothing_more,
)

pytestmark = pytest.mark.every_major

MAJOR = 18

# Collected here with this module's MAJOR (the fixtures read it from the requesting module).
__all__ = [
    "_close_connector",
    "database",
    "instance",
    "test_a_deployed_database_upgrades_in_place",
    "test_the_next_run_of_the_job_grants_what_a_later_migration_added",
    "test_the_runtime_login_syncs_and_can_do_nothing_more",
]
