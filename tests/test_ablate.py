"""The ablation with the autoencoder variant, on the tiny synthetic shop (hashing basis, 1 epoch)."""

from __future__ import annotations

import json

import pandas as pd
import pytest


@pytest.fixture
def quick(settings):
    """The conftest settings made smaller still: one epoch, a small bootstrap."""
    return settings.with_overrides(train={"epochs": 1, "batch_size": 128}, gate={"n_bootstrap": 100},
                                   data={"dataset": "synthetic", "synthetic_size": "tiny"})


def test_autoencoder_rows_and_relative_changes_against_none(quick, tmp_path):
    from training.ablate import markdown_table, run_ablation, write_outputs

    out = tmp_path / "ablation"
    result = run_ablation(quick, progress=False, log=lambda message: None,
                          variants=["autoencoder", "uniform"], integrations=["prefix"], out_dir=out)

    cells = [(row.lte, row.integration) for row in result.rows]
    assert cells == [("none", "none"), ("uniform", "prefix"), ("autoencoder", "prefix")]  # canonical order
    base = result.rows[0]
    assert base.vs_none == {} and base.vs_uniform == {}
    for row in result.rows[1:]:
        for metric in ("ndcg@10", "ndcg@100", "ndcg@500"):
            diff = row.vs_none[metric]
            # relative change is this row's mean over none's mean, on the same test users
            assert diff["mean_b"] == pytest.approx(base.metrics[metric]["mean"], rel=1e-9)
            assert diff["mean_a"] == pytest.approx(row.metrics[metric]["mean"], rel=1e-9)
            assert diff["relative"] == pytest.approx(diff["mean_a"] / diff["mean_b"] - 1, rel=1e-9)
            assert diff["relative_lo"] <= diff["relative"] <= diff["relative_hi"]
    uniform, autoencoder = result.rows[1], result.rows[2]
    assert uniform.vs_uniform == {}
    assert autoencoder.vs_uniform["ndcg@500"]["mean_b"] == pytest.approx(uniform.metrics["ndcg@500"]["mean"], rel=1e-9)

    # the encoder was trained point-in-time: only on events before t_val, and saved for the back-fill
    ae = result.autoencoder
    assert ae["examples"] > 0 and (out / ae["checkpoint"].split("/")[-1]).is_file()
    t_val = pd.Timestamp(result.data_stats["cutoffs"]["t_val"])
    assert abs(pd.Timestamp(ae["trained_before"]) - t_val) <= pd.Timedelta(seconds=1)
    assert set(result.lte_coverage) == {"uniform", "autoencoder"}

    table = markdown_table(result)
    assert "| autoencoder | prefix | sasrec |" in table and "vs uniform @500" in table
    md, js = write_outputs(result, out)
    saved = json.loads(js.read_text())
    assert [(r["lte"], r["integration"]) for r in saved["rows"]] == cells
    assert saved["autoencoder"]["checkpoint"] == ae["checkpoint"]


def test_cli_selects_variants_and_rejects_unknown_ones(quick, tmp_path):
    from typer.testing import CliRunner

    import lte.cli.ablate  # noqa: F401  (registers the command)
    from lte.cli.app import app

    runner = CliRunner()
    bad = runner.invoke(app, ["ablate", "--size", "tiny", "--variants", "uniform,bogus", "--json"])
    assert bad.exit_code != 0 and "bogus" in bad.output

    out = tmp_path / "cli"
    run = runner.invoke(app, ["ablate", "--dataset", "synthetic", "--size", "tiny", "--epochs", "1",
                              "--variants", "recency", "--integrations", "late_fusion,prefix",
                              "--out-dir", str(out), "--json"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.output)
    assert [(r["lte"], r["integration"]) for r in result["rows"]] == [
        ("none", "none"), ("recency", "prefix"), ("recency", "late_fusion")]
    assert result["autoencoder"] == {}
    assert set(result["vs_none_ndcg@100"]) == {"recency/prefix_vs_none_ndcg@100", "recency/late_fusion_vs_none_ndcg@100"}


def test_slsrec_and_dare_rows(quick, tmp_path):
    from training.ablate import markdown_table, run_ablation

    result = run_ablation(quick, progress=False, log=lambda message: None, variants=["uniform"],
                          integrations=["slsrec", "prefix"], out_dir=tmp_path, dare_dims=[8])
    cells = [(row.lte, row.integration, row.model) for row in result.rows]
    assert cells == [("none", "none", "sasrec"), ("uniform", "prefix", "sasrec"), ("uniform", "slsrec", "sasrec"),
                     ("none", "none", "dare-8"), ("uniform", "prefix", "dare-8")]
    slsrec = result.rows[2]
    assert slsrec.extra["contrastive"] > 0 and 0 < slsrec.extra["long_term_gate"] < 1
    assert all(row.s_per_epoch > 0 for row in result.rows)
    assert set(result.history) == {"none/none", "uniform/prefix", "uniform/slsrec", "none/none/dare-8",
                                   "uniform/prefix/dare-8"}
    table = markdown_table(result)
    assert "| none | none | dare-8 |" in table and "SLSRec (uniform/slsrec/sasrec)" in table
    assert result.settings["dare_dims"] == [8]
    # each DARE row is also compared with the shared-attention row of the same LTE and integration
    dare_prefix, shared_prefix = result.rows[4], result.rows[1]
    assert dare_prefix.vs_shared["ndcg@100"]["mean_b"] == pytest.approx(shared_prefix.metrics["ndcg@100"]["mean"])
    assert result.rows[3].vs_shared["ndcg@100"]["mean_b"] == pytest.approx(result.rows[0].metrics["ndcg@100"]["mean"])
    assert all(not row.vs_shared for row in result.rows[:3]) and "DARE vs shared attention" in table


def test_cli_runs_multi_interest_with_dare_rows_and_rejects_bad_widths(quick, tmp_path):
    from typer.testing import CliRunner

    import lte.cli.ablate  # noqa: F401  (registers the command)
    from lte.cli.app import app

    runner = CliRunner()
    bad = runner.invoke(app, ["ablate", "--size", "tiny", "--dare", "16,wide", "--json"])
    assert bad.exit_code != 0 and "--dare" in bad.output
    run = runner.invoke(app, ["ablate", "--dataset", "synthetic", "--size", "tiny", "--epochs", "1",
                              "--variants", "multi_interest", "--integrations", "prefix", "--dare", "8",
                              "--out-dir", str(tmp_path / "cli"), "--json"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.output)
    assert [(r["lte"], r["integration"], r["model"]) for r in result["rows"]] == [
        ("none", "none", "sasrec"), ("multi_interest", "prefix", "sasrec"),
        ("none", "none", "dare-8"), ("multi_interest", "prefix", "dare-8")]
    assert "multi_interest/prefix/dare-8_vs_none_ndcg@100" in result["vs_none_ndcg@100"]
    assert result["data_stats"]["lte_tokens"] == quick.lte.interests
