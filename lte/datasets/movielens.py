"""MovieLens loaders (ml-100k, ml-latest-small): events and item catalog, shaped like synthetic.py.

events: user_id, item_id, ts (UTC), event_type ("rating"); items: item_id, text, attributes (JSON
str), first_seen. Item text is content only (title, genres, and for latest-small the users' tags);
ratings never go into it, so the content basis stays free of behaviour. Tags are free text typed
by users about the film, which is content, not a behaviour signal like counts or ratings.
first_seen = the item's first rating (ml-latest-small) or its release date when known (ml-100k).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lte.datasets.synthetic import SyntheticData, SyntheticSpec

ML_100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]
MAX_TAGS = 10  # per item, most frequent first, so a few heavily tagged films don't dominate


class DatasetNotFoundError(FileNotFoundError):
    pass


def _require(path: Path, name: str) -> Path:
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{path} not found: point data_dir at the folder that holds {name}/ "
            "(e.g. ../shared/data) or download MovieLens from https://grouplens.org/datasets/movielens/"
        )
    return path


def load_ml_100k(data_dir: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, items) from `<data_dir>/ml-100k` (u.data tab-separated, u.item latin-1 pipes)."""
    root = Path(data_dir) / "ml-100k"
    ratings = pd.read_csv(
        _require(root / "u.data", "ml-100k"), sep="\t", names=["user_id", "item_id", "rating", "timestamp"]
    )
    events = pd.DataFrame(
        {
            "user_id": ratings["user_id"].astype("int64"),
            "item_id": ratings["item_id"].astype("int64"),
            "ts": pd.to_datetime(ratings["timestamp"], unit="s", utc=True),
            "event_type": "rating",
        }
    )
    raw = pd.read_csv(
        _require(root / "u.item", "ml-100k"), sep="|", encoding="latin-1", header=None,
        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *ML_100K_GENRES],
    )
    genres = raw[ML_100K_GENRES].to_numpy().astype(bool)
    genre_lists = [[g for g, on in zip(ML_100K_GENRES, row, strict=True) if on and g != "unknown"] for row in genres]
    released = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", utc=True, errors="coerce")
    first_rating = events.groupby("item_id")["ts"].min()
    first_seen = released.fillna(raw["item_id"].map(first_rating))
    items = pd.DataFrame(
        {
            "item_id": raw["item_id"].astype("int64"),
            "text": [_item_text(t, g) for t, g in zip(raw["title"], genre_lists, strict=True)],
            "attributes": [
                json.dumps({"title": t, "genres": g, "release_date": None if pd.isna(r) else str(r)})
                for t, g, r in zip(raw["title"], genre_lists, raw["release_date"], strict=True)
            ],
            "first_seen": first_seen,
        }
    )
    return _sorted(events), items.sort_values("item_id").reset_index(drop=True)


def load_ml_latest_small(data_dir: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, items) from `<data_dir>/ml-latest-small` (UTF-8 CSVs with headers)."""
    root = Path(data_dir) / "ml-latest-small"
    ratings = pd.read_csv(_require(root / "ratings.csv", "ml-latest-small"))
    events = pd.DataFrame(
        {
            "user_id": ratings["userId"].astype("int64"),
            "item_id": ratings["movieId"].astype("int64"),
            "ts": pd.to_datetime(ratings["timestamp"], unit="s", utc=True),
            "event_type": "rating",
        }
    )
    movies = pd.read_csv(_require(root / "movies.csv", "ml-latest-small"))
    tags_path = root / "tags.csv"
    tags_by_item: dict[int, list[str]] = {}
    if tags_path.is_file():
        tags = pd.read_csv(tags_path)
        tags["tag"] = tags["tag"].astype(str).str.strip()
        counted = tags.groupby(["movieId", "tag"]).size().reset_index(name="n")
        counted = counted.sort_values(["movieId", "n", "tag"], ascending=[True, False, True])
        tags_by_item = {int(k): list(g["tag"][:MAX_TAGS]) for k, g in counted.groupby("movieId")}
    genre_lists = [[] if g == "(no genres listed)" else g.split("|") for g in movies["genres"]]
    first_rating = events.groupby("item_id")["ts"].min()
    items = pd.DataFrame(
        {
            "item_id": movies["movieId"].astype("int64"),
            "text": [
                _item_text(t, g, tags_by_item.get(int(i), []))
                for i, t, g in zip(movies["movieId"], movies["title"], genre_lists, strict=True)
            ],
            "attributes": [
                json.dumps({"title": t, "genres": g, "tags": tags_by_item.get(int(i), [])})
                for i, t, g in zip(movies["movieId"], movies["title"], genre_lists, strict=True)
            ],
            # Items nobody rated have no first appearance in the data: use the earliest event.
            "first_seen": movies["movieId"].map(first_rating).fillna(events["ts"].min()),
        }
    )
    return _sorted(events), items.sort_values("item_id").reset_index(drop=True)


def _item_text(title: str, genres: list[str], tags: list[str] = ()) -> str:
    text = f"{title}. Genres: {', '.join(genres) if genres else 'unknown'}."
    return f"{text} Tags: {', '.join(tags)}." if tags else text


def _sorted(events: pd.DataFrame) -> pd.DataFrame:
    # MovieLens has many same-second ties: (user, ts, item) is the stable order (DESIGN.md).
    return events.sort_values(["user_id", "ts", "item_id"], kind="stable").reset_index(drop=True)


LOADERS = {"ml-100k": load_ml_100k, "ml-latest-small": load_ml_latest_small}


def load(name: str, data_dir: Path | str) -> SyntheticData:
    """The dataset as a SyntheticData-shaped bundle (spec describes sizes only; no planted facts)."""
    if name not in LOADERS:
        raise ValueError(f"unknown MovieLens dataset {name!r}; choose one of {sorted(LOADERS)}")
    events, items = LOADERS[name](data_dir)
    start, end = events["ts"].min(), events["ts"].max()
    spec = SyntheticSpec(
        n_users=int(events["user_id"].nunique()), n_items=len(items), sessions_per_year=0.0,
        start=start.to_pydatetime(), days=max(1, (end - start).days),
    )
    facts = {"dataset": name, "start": start.isoformat(), "end": end.isoformat(), "n_events": len(events)}
    return SyntheticData(events=events, items=items, spec=spec, seed=0, facts=facts)
