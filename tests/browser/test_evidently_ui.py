"""The Evidently UI after the pipeline run: the LTE drift project and its monitoring snapshot."""

from __future__ import annotations


def test_drift_project_lists_its_snapshot(servers, materialized, page, shots):
    projects = servers.get_json(f"{servers.evidently}/api/projects")
    assert projects, "the pipeline run wrote no Evidently project into the workspace"
    project = projects[0]
    snapshots = servers.get_json(f"{servers.evidently}/api/projects/{project['id']}/snapshots")
    assert snapshots, f"project {project['name']!r} has no snapshot"

    page.goto(servers.evidently)
    page.get_by_text(project["name"], exact=True).first.wait_for()

    page.goto(f"{servers.evidently}/projects/{project['id']}/reports")
    for snapshot in snapshots:
        page.get_by_text(snapshot["name"] or snapshot["id"], exact=True).first.wait_for()
    page.screenshot(path=str(shots / "evidently_reports.png"))

    page.goto(f"{servers.evidently}/projects/{project['id']}")
    page.get_by_text("Dashboard", exact=True).first.wait_for()
    page.locator("svg").first.wait_for()
    page.wait_for_timeout(1500)  # plots draw after their data arrives
    page.screenshot(path=str(shots / "evidently_dashboard.png"))
