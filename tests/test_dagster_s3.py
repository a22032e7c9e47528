"""LTE snapshots on S3: with an s3:// artifact store the LTE assets upload Parquet copies of what they
wrote (moto server on 127.0.0.1), and a new, empty LTE_HOME is rebuilt from them."""

from __future__ import annotations

import json

import boto3
import dagster as dg
import numpy as np

from orchestration.resources import lte_resources


def _assert_same(a, b):
    assert np.array_equal(a.user_ids, b.user_ids) and np.array_equal(a.n_events, b.n_events)
    assert a.vectors.tobytes() == b.vectors.tobytes()
    assert (a.as_of, a.basis_hash, a.variant, a.window_start, a.window_end) == (
        b.as_of, b.basis_hash, b.variant, b.window_start, b.window_end)


def _read(home, read):
    from lte.db import connect
    from lte.feature_store import FeatureStore

    con = connect(home / "lte.duckdb", read_only=True)
    try:
        return read(FeatureStore(con), con)
    finally:
        con.close()


def test_lte_assets_export_to_s3_and_a_new_home_is_restored_from_the_exports(tmp_path, s3_bucket, monkeypatch):
    from assets import basis, ingestion, lte
    from lte.lte_export import list_exports, restore_lte
    from lte.storage import S3Store

    endpoint, bucket = s3_bucket
    home = tmp_path / "home"
    for key, value in {"LTE_HOME": str(home), "LTE_DATA__SYNTHETIC_SIZE": "tiny", "LTE_BASIS__ENCODER": "hashing",
                       "LTE_BASIS__HASHING_DIM": "32"}.items():
        monkeypatch.setenv(key, value)
    resources = lte_resources(home=str(home), artifact_uri=f"s3://{bucket}/lte", endpoint_url=endpoint)
    result = dg.materialize(
        [ingestion.events, ingestion.items, basis.content_basis, lte.lte_autoencoder, lte.lte_snapshots, lte.lte_live],
        resources=resources)
    assert result.success

    store = S3Store(f"s3://{bucket}/lte", endpoint_url=endpoint)
    live_key, = list_exports(store, "lte_live")
    snapshots_key, = list_exports(store, "lte_snapshots")
    for asset, key in (("lte_live", live_key), ("lte_snapshots", snapshots_key)):
        metadata = result.asset_materializations_for_node(asset)[0].metadata
        assert metadata["export"].value == f"s3://{bucket}/lte/{key}"
    objects = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket, Prefix="lte/lte_exports/")
    assert {o["Key"] for o in objects["Contents"]} == {f"lte/{live_key}", f"lte/{snapshots_key}"}

    live = _read(home, lambda fs, con: fs.live())
    history = _read(home, lambda fs, con: con.execute(
        "SELECT count(*), count(DISTINCT as_of) FROM lte_snapshots").fetchall()[0])
    assert len(live) > 0 and history[1] > 1
    assert snapshots_key.split("/")[2] == live.basis_hash  # lte_exports/<table>/<basis>/<variant>/...

    # A new home: restore the live export (made live again) and the history export.
    from lte.db import connect

    restored = tmp_path / "restored"
    restored.mkdir()
    con = connect(restored / "lte.duckdb")
    try:
        live_report = restore_lte(con, store, live_key)
        history_report = restore_lte(con, store, snapshots_key)
        again = restore_lte(con, store, snapshots_key)
    finally:
        con.close()
    assert live_report.live_rows == len(live) and live_report.snapshots == 1
    assert history_report.live_rows is None
    assert again.rows_added == 0  # first write wins: restoring twice adds nothing
    _assert_same(_read(restored, lambda fs, con: fs.live()), live)
    assert _read(restored, lambda fs, con: con.execute(
        "SELECT count(*), count(DISTINCT as_of) FROM lte_snapshots").fetchall()[0]) == history
    some_as_of = _read(home, lambda fs, con: fs.snapshot_times_available("uniform", live.basis_hash))[1]
    _assert_same(_read(restored, lambda fs, con: fs.snapshot(some_as_of, basis_hash=live.basis_hash)),
                 _read(home, lambda fs, con: fs.snapshot(some_as_of, basis_hash=live.basis_hash)))

    # The same through the command line, into a third home configured by LTE_* variables.
    third = tmp_path / "third"
    for key, value in {"LTE_HOME": str(third), "LTE_STORAGE__URI": f"s3://{bucket}/lte",
                       "LTE_STORAGE__S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    from typer.testing import CliRunner

    from lte.cli import app

    listed = CliRunner().invoke(app, ["embedding", "exports", "--json"])
    assert listed.exit_code == 0, listed.output
    assert live_key in json.loads(listed.output)
    restored_cli = CliRunner().invoke(app, ["embedding", "restore", live_key, "--json"])
    assert restored_cli.exit_code == 0, restored_cli.output
    assert json.loads(restored_cli.output)["live_rows"] == len(live.user_ids)
    _assert_same(_read(third, lambda fs, con: fs.live()), live)
    missing = CliRunner().invoke(app, ["embedding", "restore", "lte_exports/lte_live/nope.parquet"])
    assert missing.exit_code == 1 and "lte embedding exports" in missing.output


def test_nothing_is_exported_when_artifacts_are_local(tmp_path, monkeypatch):
    from assets import basis, ingestion, lte

    home = tmp_path / "home"
    for key, value in {"LTE_HOME": str(home), "LTE_DATA__SYNTHETIC_SIZE": "tiny", "LTE_BASIS__ENCODER": "hashing",
                       "LTE_BASIS__HASHING_DIM": "32"}.items():
        monkeypatch.setenv(key, value)
    result = dg.materialize(
        [ingestion.events, ingestion.items, basis.content_basis, lte.lte_autoencoder, lte.lte_snapshots, lte.lte_live],
        resources=lte_resources(home=str(home)))
    assert result.success
    assert "export" not in result.asset_materializations_for_node("lte_live")[0].metadata
    assert not (home / "artifacts" / "lte_exports").exists()
