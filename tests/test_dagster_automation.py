"""Declarative automation: which assets the `lte_automation` sensor requests, and when it keeps quiet."""

from __future__ import annotations

import dagster as dg

from orchestration.definitions import defs

LIVE = dg.AssetKey("lte_live")
DRIFT = dg.AssetKey("lte_drift_report")
LIVE_CHECK = dg.AssetCheckKey(LIVE, "lte_live_sane")


def _unpartitioned_keys() -> list[dg.AssetKey]:
    return [node.key for node in defs.resolve_asset_graph().asset_nodes if node.partitions_def is None]


def _everything_materialized() -> tuple[dg.DagsterInstance, object]:
    """An instance where every asset has been materialized once, evaluated once (the baseline tick)."""
    instance = dg.DagsterInstance.ephemeral()
    for key in _unpartitioned_keys():
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    return instance, first.cursor


def _tick(instance, cursor, *updated: str):
    for key in updated:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)


def _requested(result) -> set:
    """Asset and check keys the evaluation requested."""
    return {r.key for r in result.results if r.true_subset.size > 0}


def test_the_automation_sensor_is_defined_stopped_and_covers_every_asset():
    sensors = {s.name: s for s in defs.get_repository_def().sensor_defs}
    automation = sensors["lte_automation"]
    assert isinstance(automation, dg.AutomationConditionSensorDefinition)
    assert automation.default_status == dg.DefaultSensorStatus.STOPPED
    assert "default_automation_condition_sensor" not in sensors  # ours replaces Dagster's implicit one
    conditioned = {node.key for node in defs.resolve_asset_graph().asset_nodes if node.automation_condition}
    assert conditioned == {LIVE, DRIFT}


def test_a_new_content_basis_requests_lte_live_and_its_check_once():
    instance, cursor = _everything_materialized()
    quiet = _tick(instance, cursor)
    assert quiet.total_requested == 0

    after_basis = _tick(instance, quiet.cursor, "content_basis")
    assert after_basis.get_num_requested(LIVE) == 1
    assert after_basis.get_num_requested(DRIFT) == 0
    assert _requested(after_basis) == {LIVE, LIVE_CHECK}

    # Requested once: the next tick waits for that run instead of asking again.
    assert _tick(instance, after_basis.cursor).get_num_requested(LIVE) == 0


def test_new_snapshots_request_lte_live_and_a_new_champion_requests_the_drift_report():
    instance, cursor = _everything_materialized()
    after_snapshots = _tick(instance, cursor, "lte_snapshots")
    assert after_snapshots.get_num_requested(LIVE) == 1
    after_champion = _tick(instance, after_snapshots.cursor, "lte_live", "champion_model")
    assert after_champion.get_num_requested(DRIFT) == 1
    assert after_champion.get_num_requested(LIVE) == 0


def test_a_run_that_already_refreshed_lte_live_is_not_repeated():
    """`full_pipeline` and the `refresh_lte` schedule materialize lte_live in the same run as its
    parents: the sensor must not request it again (no fight with jobs, schedules and sensors)."""
    instance, cursor = _everything_materialized()

    @dg.asset(key="content_basis")
    def basis_stub():
        return None

    @dg.asset(key="lte_live", deps=[basis_stub])
    def live_stub():
        return None

    @dg.asset_check(asset=live_stub, name="lte_live_sane")
    def check_stub():
        return dg.AssetCheckResult(passed=True)

    assert dg.materialize([basis_stub, live_stub, check_stub], instance=instance).success
    assert _tick(instance, cursor).total_requested == 0
