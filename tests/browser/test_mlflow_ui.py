"""The MLflow UI after the pipeline run: the registered model's page shows the champion version."""

from __future__ import annotations

import urllib.parse

MODEL = "lte-sasrec"


def test_registered_model_shows_the_champion_alias(servers, materialized, page, shots):
    query = urllib.parse.urlencode({"name": MODEL, "alias": "champion"})
    champion = servers.get_json(f"{servers.mlflow}/api/2.0/mlflow/registered-models/alias?{query}")["model_version"]

    page.goto(f"{servers.mlflow}/#/models/{MODEL}")
    page.get_by_role("heading", name=MODEL).first.wait_for()
    # The assistant side panel is open by default and hides half of the versions table.
    close_assistant = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close_assistant.count():
        close_assistant.first.click()
    version_link = page.get_by_role("link", name=f"Version {champion['version']}", exact=True)
    row = page.get_by_role("row").filter(has=version_link).first
    row.wait_for()
    aliases = row.inner_text().replace("\xa0", " ")
    assert "@ champion" in aliases, (
        f"the row of version {champion['version']} does not show the champion alias: {aliases!r}"
    )
    page.screenshot(path=str(shots / "mlflow_model.png"))
