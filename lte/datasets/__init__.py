"""Built-in datasets: the synthetic shop (default, no files needed) and MovieLens loaders."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lte.config import Settings


@dataclass
class Dataset:
    name: str
    events: pd.DataFrame  # user_id, item_id, ts (UTC), event_type
    items: pd.DataFrame  # item_id, text, attributes (JSON str), first_seen


def load_dataset(settings: Settings) -> Dataset:
    """The dataset named by settings.data; MovieLens is read from settings.data.data_dir."""
    data = settings.data
    if data.dataset == "synthetic":
        from lte.datasets.synthetic import generate

        synthetic = generate(data.synthetic_size, seed=data.seed)
        return Dataset(f"synthetic:{data.synthetic_size}:seed{data.seed}", synthetic.events, synthetic.items)
    from lte.datasets import movielens

    bundle = movielens.load(data.dataset, data.data_dir)
    return Dataset(data.dataset, bundle.events, bundle.items)


def load_catalog(settings: Settings) -> pd.DataFrame:
    """The item catalog of settings.data's dataset; for the synthetic shop, without generating events."""
    if settings.data.dataset == "synthetic":
        from lte.datasets.synthetic import generate_items

        return generate_items(settings.data.synthetic_size, seed=settings.data.seed)
    return load_dataset(settings).items
