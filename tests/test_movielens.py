"""MovieLens loaders on the real files (skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lte import catalog, events
from lte.datasets import movielens

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.parametrize("name, n_events, n_items", [("ml-100k", 100_000, 1682), ("ml-latest-small", 100_836, 9742)])
def test_loader_shapes_and_ingestion(con, name, n_events, n_items):
    if not (DATA / name).is_dir():
        pytest.skip(f"{DATA / name} absent: MovieLens tests need ../shared/data/{name}")
    data = movielens.load(name, DATA)
    assert list(data.events.columns) == ["user_id", "item_id", "ts", "event_type"]
    assert list(data.items.columns) == ["item_id", "text", "attributes", "first_seen"]
    assert (len(data.events), len(data.items)) == (n_events, n_items)
    assert str(data.events["ts"].dt.tz) == "UTC" and data.items["first_seen"].notna().all()
    toy_story = data.items.set_index("item_id").loc[1]
    assert toy_story["text"].startswith("Toy Story (1995). Genres:") and "Animation" in toy_story["text"]
    assert "rating" not in toy_story["text"].lower()
    assert json.loads(toy_story["attributes"])["title"] == "Toy Story (1995)"
    report = events.ingest_frame(con, data.events, source=f"movielens:{name}")
    assert (report.rows_in, report.quarantined) == (n_events, 0)
    assert report.accepted + report.duplicates == n_events
    assert catalog.upsert_items(con, data.items) == n_items


def test_missing_folder_says_where_to_look(tmp_path):
    with pytest.raises(movielens.DatasetNotFoundError, match="ml-100k"):
        movielens.load("ml-100k", tmp_path)
