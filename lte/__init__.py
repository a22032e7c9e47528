"""LTE: long-term embeddings over a frozen content basis (domain library, no Dagster/MLflow imports)."""

__version__ = "0.1.0"
