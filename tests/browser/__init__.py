"""Browser tests: the Dagster, MLflow and Evidently UIs in headless Debian Chromium (Playwright)."""
