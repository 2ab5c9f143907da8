#!/usr/bin/env python3
"""krippendorff / scipy / numpy reference for cqa-studio's agreement among several raters.

Writes ``tests/fixtures/agreement_reference.json``: a seeded synthetic study (three human raters
with missing ratings, two models as expected scores, one of them not rating the works it was
trained on), the bootstrap resamples of its items, and every figure of ``cqa agreement``:

* Krippendorff's alpha of the humans, interval and ordinal (``krippendorff.alpha`` on the
  raters x items matrix with NaN for a missing rating), and alpha on float ratings;
* each pair of humans: scipy's Spearman rho and the mean absolute difference on the items both
  rated;
* each human against the mean of the other humans, each model against the mean of all humans
  and against each human;
* leave-one-annotator-out: with human h left out, the model and h each against the mean of the
  others on the items all three have, and model - h;
* for each figure, numpy's 2.5 / 97.5 percentiles (linear interpolation) over the stored
  resamples on which the figure is defined (cqa recomputes them from the same resamples).

Re-run from the repository root:

    pip install -r tests/reference/requirements.txt
    python tests/reference/make_agreement_fixtures.py
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import krippendorff
import numpy as np
import scipy
import scipy.stats

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "agreement_reference.json"
SEED = 2026
ITEMS = 30
RESAMPLES = 300
LEVEL = 0.95
RATERS = ["Ada", "Ben", "Cy"]

warnings.simplefilter("ignore")  # scipy warns on constant input; the figure is NaN there


def alpha(matrix: np.ndarray, level: str) -> float:
    """krippendorff.alpha on an items x raters matrix (NaN = missing)."""
    data = matrix.T
    values = data[~np.isnan(data)]
    if len(np.unique(values)) < 2:
        return math.nan  # the package refuses a one-value domain; alpha is undefined
    try:
        return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    except (ValueError, ZeroDivisionError):
        return math.nan


def rho(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return math.nan
    return float(scipy.stats.spearmanr(x, y).statistic)


def mae(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(x - y))) if len(x) else math.nan


def rest_mean(matrix: np.ndarray, except_rater: int | None) -> np.ndarray:
    keep = [r for r in range(matrix.shape[1]) if r != except_rater]
    sub = matrix[:, keep]
    counts = (~np.isnan(sub)).sum(axis=1)
    sums = np.nansum(sub, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def pair_figure(kind: str, x: np.ndarray, y: np.ndarray):
    """A figure of two item columns on an index list: the items where both are present."""

    def figure(idx: np.ndarray) -> float:
        a, b = x[idx], y[idx]
        both = ~np.isnan(a) & ~np.isnan(b)
        return rho(a[both], b[both]) if kind == "spearman" else mae(a[both], b[both])

    return figure


def estimate(figure, resamples: np.ndarray) -> dict:
    value = figure(np.arange(ITEMS))
    draws = np.array([figure(idx) for idx in resamples])
    draws = draws[~np.isnan(draws)]
    tail = (1 - LEVEL) / 2 * 100
    none = lambda v: None if v is None or math.isnan(v) else float(v)  # noqa: E731
    low, high = (np.percentile(draws, [tail, 100 - tail]) if len(draws) else (None, None))
    return {"value": none(value), "ci_low": none(low), "ci_high": none(high), "resamples": int(len(draws))}


def main() -> None:
    rng = np.random.default_rng(SEED)
    quality = rng.uniform(2, 9, ITEMS)
    humans = np.clip(np.round(quality[:, None] + rng.normal(0, 1.3, (ITEMS, len(RATERS)))), 1, 10)
    humans[rng.random(humans.shape) < 0.25] = np.nan
    base = np.clip(5 + 0.3 * (quality - 5) + rng.normal(0, 1.5, ITEMS), 1, 10)
    tuned = np.clip(quality + rng.normal(0, 0.9, ITEMS), 1, 10)
    tuned[rng.choice(ITEMS, 8, replace=False)] = np.nan  # trained on these works
    models = {"base": base, "tuned": tuned}
    resamples = rng.integers(0, ITEMS, (RESAMPLES, ITEMS))

    expected: dict = {
        "alpha_interval": estimate(lambda idx: alpha(humans[idx], "interval"), resamples),
        "alpha_ordinal": estimate(lambda idx: alpha(humans[idx], "ordinal"), resamples),
        "alpha_interval_with_floats": alpha(np.column_stack([humans, base]), "interval"),
        "pairs": [],
        "humans_vs_rest": [],
        "models": [],
    }
    for a in range(len(RATERS)):
        for b in range(a + 1, len(RATERS)):
            x, y = humans[:, a], humans[:, b]
            expected["pairs"].append({
                "a": RATERS[a], "b": RATERS[b], "n": int((~np.isnan(x) & ~np.isnan(y)).sum()),
                "spearman": estimate(pair_figure("spearman", x, y), resamples),
                "mae": estimate(pair_figure("mae", x, y), resamples),
            })
    for h in range(len(RATERS)):
        x, rest = humans[:, h], rest_mean(humans, h)
        expected["humans_vs_rest"].append({
            "rater": RATERS[h], "n": int((~np.isnan(x) & ~np.isnan(rest)).sum()),
            "spearman": estimate(pair_figure("spearman", x, rest), resamples),
            "mae": estimate(pair_figure("mae", x, rest), resamples),
        })
    for name, m in models.items():
        everyone = rest_mean(humans, None)
        entry = {
            "name": name,
            "vs_humans": {
                "n": int((~np.isnan(m) & ~np.isnan(everyone)).sum()),
                "spearman": estimate(pair_figure("spearman", m, everyone), resamples),
                "mae": estimate(pair_figure("mae", m, everyone), resamples),
            },
            "with_each_human": [],
            "leave_one_out": [],
        }
        for h in range(len(RATERS)):
            x = humans[:, h]
            entry["with_each_human"].append({
                "b": RATERS[h], "n": int((~np.isnan(m) & ~np.isnan(x)).sum()),
                "spearman": estimate(pair_figure("spearman", m, x), resamples),
                "mae": estimate(pair_figure("mae", m, x), resamples),
            })
            rest = rest_mean(humans, h)
            on = ~np.isnan(m) & ~np.isnan(x) & ~np.isnan(rest)
            human_on, model_on = np.where(on, x, np.nan), np.where(on, m, np.nan)
            figures = {
                (who, kind): pair_figure(kind, col, rest)
                for who, col in (("human", human_on), ("model", model_on))
                for kind in ("spearman", "mae")
            }

            def difference(kind):
                return lambda idx: figures[("model", kind)](idx) - figures[("human", kind)](idx)

            entry["leave_one_out"].append({
                "left_out": RATERS[h], "n": int(on.sum()),
                "human_spearman": estimate(figures[("human", "spearman")], resamples),
                "model_spearman": estimate(figures[("model", "spearman")], resamples),
                "spearman_model_minus_human": estimate(difference("spearman"), resamples),
                "human_mae": estimate(figures[("human", "mae")], resamples),
                "model_mae": estimate(figures[("model", "mae")], resamples),
                "mae_model_minus_human": estimate(difference("mae"), resamples),
            })
        expected["models"].append(entry)

    nan_to_none = lambda a: [[None if math.isnan(v) else float(v) for v in row] for row in a]  # noqa: E731
    fixture = {
        "versions": {"krippendorff": getattr(krippendorff, "__version__", "0.9.0"), "numpy": np.__version__, "scipy": scipy.__version__},
        "seed": SEED,
        "level": LEVEL,
        "raters": RATERS,
        "scores": nan_to_none(humans),
        "models": [{"name": n, "scores": [None if math.isnan(v) else float(v) for v in m]} for n, m in models.items()],
        "resamples": resamples.tolist(),
        "expected": expected,
    }
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
