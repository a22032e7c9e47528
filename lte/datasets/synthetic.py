"""Deterministic synthetic shop with planted long-term taste.

What is planted, and why a model that knows long-term taste can do better:
- Items have attributes (category, colour, material, style, brand); their text is made from them
  ("black leather boots, casual, brand Kestrel"), so a content encoder sees the same structure.
- Every user has a stable long-term taste for the whole ~2-year history: a few *facets*
  (category + style + brand, e.g. "casual Kestrel boots"; style weighs more than brand) and two
  favourite colours.
- Activity comes in short sessions. Each session has one intent: with probability `p_taste` one of
  the user's facets, otherwise a random exploration intent; the next session keeps the previous
  intent with probability `p_keep` (the drifting short-term intent).
- Within a session, items are drawn from the intent's category, weighted by popularity and by how
  well style / brand / colour match the intent and the user's colours.
A short-term sequence (the last few sessions) shows only the facets used recently; the long
lagged window shows all of them. When a session switches to a facet absent from the recent
sequence, only a model with the long-term view can rank its items high.

Why these defaults (tuned with the pipeline's own path, training.train.fit_and_evaluate with the
default settings, prefix vs none on "demo"; the first version gave LTE no measurable uplift):
- Short sessions (mean 2 items), ~60 a year, no intent carry-over: a session start is 40% of all
  next-item targets, and the 8-item short-term window (training/data.py) is the last ~4 sessions,
  i.e. the last 3-4 weeks. With 3 facets and 6-item sessions, every facet showed up in any 50-item
  window, so the lagged LTE had nothing to add (+0.1% NDCG@100).
- Facets are led by style, not brand (style weight 30, brand weight 15; was 10 and 60). The default
  basis is MiniLM sentence embeddings: an invented brand name is one rare token among ~8 words and
  MiniLM blurs it, while "casual" / "formal" / "sporty" are words it separates well. With the
  brand-led weights the prefix uplift was +9.2% with MiniLM but +16.9% with hashed n-grams (which
  keep the exact brand token): the planted signal was there, the default encoder could not see it.
- 3 facets: a facet is then a sharp direction in the averaged LTE. With 2-year histories, the
  uplift fell as facets were added (MiniLM, style-led weights: 4 -> +9.1%, 5 (colour weight 3)
  -> +7.2%, 6 -> +3.6%): more facets are absent from the short window, but their average blurs faster.
- p_taste 0.95 (was 0.9): fewer exploration sessions to blur the LTE. Result (MiniLM, defaults):
  +10.8% [+9.5, +12.3] NDCG@100 (data/train seed 0) and +11.3% [+9.8, +12.9] (seed 1); with
  p_taste 0.9 it was +11.7% and +9.7%.
- Strong style / brand weights: a facet is a small set of items, so knowing it is worth rank,
  not just the right category (a category alone fills the top 100).

`shift_at` plants a taste shift (issue 8's drift scenario): from that time on every user's
facets and colours are redrawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

CATEGORIES = [
    "ankle boots", "sneakers", "sandals", "dress", "jeans", "t-shirt", "hoodie", "jacket",
    "coat", "skirt", "shirt", "backpack", "handbag", "scarf", "cap", "watch",
]
COLORS = ["black", "white", "red", "navy", "green", "beige", "grey", "pink", "brown", "yellow"]
MATERIALS = ["leather", "cotton", "denim", "wool", "suede", "linen", "nylon", "silk"]
STYLES = ["casual", "formal", "sporty", "vintage", "streetwear", "outdoor"]
BRANDS = [
    "Kestrel", "Alder", "Morrow", "Quill", "Harbor", "Nimbus", "Ferro", "Juniper", "Oakley Row",
    "Saffron", "Tundra", "Vesper", "Wren", "Cobalt", "Lumen", "Marlow", "Pike", "Rook", "Sable",
    "Thistle", "Umber", "Vale", "Willow", "Yarrow", "Zephyr", "Basalt", "Cinder", "Dune", "Ember",
    "Fjord",
]
EVENT_TYPES = np.array(["view", "cart", "purchase"])
EVENT_TYPE_P = np.array([0.85, 0.10, 0.05])


@dataclass(frozen=True)
class SyntheticSpec:
    n_users: int
    n_items: int
    sessions_per_year: float  # mean per user
    session_len: float = 2.0  # mean items per session
    n_facets: int = 3
    p_taste: float = 0.95  # a session's intent is one of the user's facets
    p_keep: float = 0.0  # the next session keeps the previous intent
    style_weight: float = 30.0  # item weight multiplier (1 + w) when the item matches the intent's style
    brand_weight: float = 15.0  # ... when it matches the intent's brand
    color_weight: float = 1.5  # ... when its colour is one of the user's two colours
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    days: int = 730


SIZES: dict[str, SyntheticSpec] = {
    "tiny": SyntheticSpec(n_users=80, n_items=240, sessions_per_year=30),
    "small": SyntheticSpec(n_users=500, n_items=800, sessions_per_year=60),
    "demo": SyntheticSpec(n_users=1000, n_items=1000, sessions_per_year=60),
    "large": SyntheticSpec(n_users=20000, n_items=10000, sessions_per_year=60),
}


@dataclass
class SyntheticData:
    events: pd.DataFrame  # user_id, item_id, ts (UTC), event_type
    items: pd.DataFrame  # item_id, text, attributes (JSON str), first_seen
    spec: SyntheticSpec
    seed: int
    shift_at: datetime | None = None
    facts: dict = field(default_factory=dict)


def _make_items(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    n = spec.n_items
    attrs = {
        "category": rng.integers(len(CATEGORIES), size=n),
        "color": rng.integers(len(COLORS), size=n),
        "material": rng.integers(len(MATERIALS), size=n),
        "style": rng.integers(len(STYLES), size=n),
        "brand": rng.integers(len(BRANDS), size=n),
    }
    # Zipf-like popularity, independent of attributes.
    popularity = 1.0 / (1.0 + rng.permutation(n)) ** 0.6
    texts, attributes = [], []
    for i in range(n):
        cat, col = CATEGORIES[attrs["category"][i]], COLORS[attrs["color"][i]]
        mat, sty = MATERIALS[attrs["material"][i]], STYLES[attrs["style"][i]]
        brand = BRANDS[attrs["brand"][i]]
        texts.append(f"{col} {mat} {cat}, {sty}, brand {brand}")
        attributes.append(
            json.dumps({"category": cat, "color": col, "material": mat, "style": sty, "brand": brand})
        )
    # Items appear over the first ~year of the catalogue's life; none after it is first interacted.
    first_seen = [spec.start - timedelta(days=30)] * n
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, n + 1, dtype=np.int64),
            "text": texts,
            "attributes": attributes,
            "first_seen": pd.to_datetime(first_seen, utc=True),
        }
    )
    attrs["popularity"] = popularity
    return items, attrs


def _draw_taste(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    facets = np.stack(
        [
            rng.choice(len(CATEGORIES), size=spec.n_facets, replace=False),
            rng.integers(len(STYLES), size=spec.n_facets),
            rng.integers(len(BRANDS), size=spec.n_facets),
        ],
        axis=1,
    )  # (n_facets, 3): category, style, brand
    colors = rng.choice(len(COLORS), size=2, replace=False)
    return facets, colors


def generate_items(size: str = "demo", seed: int = 0, spec: SyntheticSpec | None = None) -> pd.DataFrame:
    """The catalog `generate(size, seed)` returns, without simulating any events (items are drawn first)."""
    return _make_items(spec or SIZES[size], np.random.default_rng(seed))[0]


def generate(
    size: str = "demo", seed: int = 0, shift_at: datetime | None = None, spec: SyntheticSpec | None = None
) -> SyntheticData:
    """Generate events and items; the same (size, seed, shift_at) always gives the same data."""
    spec = spec or SIZES[size]
    rng = np.random.default_rng(seed)
    items, attrs = _make_items(spec, rng)
    cat, sty, brand, col = attrs["category"], attrs["style"], attrs["brand"], attrs["color"]
    pop = attrs["popularity"]
    by_category = [np.flatnonzero(cat == c) for c in range(len(CATEGORIES))]

    end = spec.start + timedelta(days=spec.days)
    span_s = spec.days * 86400.0
    shift_s = (shift_at - spec.start).total_seconds() if shift_at else None
    users, item_ids, times = [], [], []
    for user in range(1, spec.n_users + 1):
        facets, colors = _draw_taste(spec, rng)
        shifted_taste = _draw_taste(spec, rng) if shift_s is not None else None
        rate = spec.sessions_per_year * rng.lognormal(0.0, 0.35)
        n_sessions = max(2, rng.poisson(rate * spec.days / 365.0))
        starts = np.sort(rng.uniform(0, span_s - 3600, size=n_sessions))
        intent = None
        for t0 in starts:
            f, c = (shifted_taste if shift_s is not None and t0 >= shift_s else (facets, colors))
            if intent is None or rng.random() >= spec.p_keep:
                if rng.random() < spec.p_taste:
                    intent = tuple(f[rng.integers(len(f))])
                else:
                    intent = (rng.integers(len(CATEGORIES)), rng.integers(len(STYLES)), rng.integers(len(BRANDS)))
            pool = by_category[intent[0]]
            w = pop[pool] * (1 + spec.style_weight * (sty[pool] == intent[1]))
            w = w * (1 + spec.brand_weight * (brand[pool] == intent[2])) * (1 + spec.color_weight * np.isin(col[pool], c))
            k = 1 + rng.poisson(spec.session_len - 1)
            picks = rng.choice(pool, size=k, p=w / w.sum())
            gaps = rng.exponential(90.0, size=k).cumsum()
            users.append(np.full(k, user))
            item_ids.append(picks + 1)
            times.append(t0 + gaps)
    ts_s = np.concatenate(times)
    keep = ts_s < span_s
    base = pd.Timestamp(spec.start)
    events = pd.DataFrame(
        {
            "user_id": np.concatenate(users)[keep].astype(np.int64),
            "item_id": np.concatenate(item_ids)[keep].astype(np.int64),
            # whole seconds, like real logs (and so ties happen)
            "ts": base + pd.to_timedelta(np.floor(ts_s[keep]), unit="s"),
            "event_type": rng.choice(EVENT_TYPES, size=int(keep.sum()), p=EVENT_TYPE_P),
        }
    )
    events = events.sort_values(["user_id", "ts", "item_id"], kind="stable").reset_index(drop=True)
    facts = {"start": spec.start.isoformat(), "end": end.isoformat(), "n_events": len(events)}
    return SyntheticData(events=events, items=items, spec=spec, seed=seed, shift_at=shift_at, facts=facts)
