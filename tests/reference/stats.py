"""Reference values for tests/stats.rs, computed with SciPy and NumPy.

Usage: stats.py REQUEST.json RESULT.json

REQUEST: {"metrics": [{"name", "values", "bins"?}], "wilcoxon": [{"name", "x", "y"}],
          "adjust": [{"name", "p"}], "mcnemar": [{"name", "only_base", "only_tuned"}]}
RESULT:  {"versions": {...}, "metrics": {name: {...}}, "wilcoxon": {name: {"statistic", "pvalue"}},
          "adjust": {name: {"bh", "holm"}}, "mcnemar": {name: pvalue}}
NaN is written as null.
"""

import json
import math
import sys

import numpy as np
import scipy
from scipy import stats


def finite_or_none(v):
    v = float(v)
    return v if math.isfinite(v) else None


def metric_reference(values, bins):
    s = np.asarray(values, dtype=np.float64)
    a = np.abs(s)
    n = a.size
    total = a.sum()
    desc = np.sort(a)[::-1]
    cum = np.cumsum(desc)
    out = {
        "intensity": a.mean(),
        # scipy.stats.entropy normalises pk itself; natural log.
        "entropy": stats.entropy(a / total),
        "kurtosis": stats.kurtosis(s),
        "kurtosis_abs": stats.kurtosis(a),
        # Gini from the mean absolute difference (a formula independent of the sorted one).
        "gini": np.abs(a[:, None] - a[None, :]).sum() / (2.0 * n * n * a.mean()),
        "edges50": int(np.argmax(cum >= 0.5 * total)) + 1,
        "edges90": int(np.argmax(cum >= 0.9 * total)) + 1,
    }
    out["entropy_normalized"] = out["entropy"] / math.log(n)
    for p in (1, 5, 10):
        k = math.ceil(n * p / 100)
        out[f"top{p}"] = desc[:k].sum() / total
    if bins is not None:
        counts, _ = np.histogram(s, bins=bins)
        out["hist_entropy"] = stats.entropy(counts)
        out["hist_entropy_normalized"] = out["hist_entropy"] / math.log(bins)
    return {k: finite_or_none(v) for k, v in out.items()}


def holm(p):
    """Holm–Bonferroni adjusted p-values, with NumPy: (m − j)·p(j) in sorted order, made
    monotone by a running maximum and capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def main():
    with open(sys.argv[1]) as f:
        request = json.load(f)
    result = {
        "versions": {"scipy": scipy.__version__, "numpy": np.__version__},
        "metrics": {},
        "wilcoxon": {},
    }
    for item in request.get("metrics", []):
        result["metrics"][item["name"]] = metric_reference(item["values"], item.get("bins"))
    for item in request.get("wilcoxon", []):
        x = np.asarray(item["x"], dtype=np.float64)
        y = np.asarray(item["y"], dtype=np.float64)
        res = stats.wilcoxon(x, y)  # SciPy's defaults, as circuitdiff documents
        result["wilcoxon"][item["name"]] = {
            "statistic": finite_or_none(res.statistic),
            "pvalue": finite_or_none(res.pvalue),
        }
    result["adjust"] = {}
    for item in request.get("adjust", []):
        p = np.asarray(item["p"], dtype=np.float64)
        result["adjust"][item["name"]] = {
            "bh": [float(v) for v in stats.false_discovery_control(p, method="bh")],
            "holm": [float(v) for v in holm(p)],
        }
    result["mcnemar"] = {}
    for item in request.get("mcnemar", []):
        b, c = item["only_base"], item["only_tuned"]
        # The exact McNemar test is the two-sided binomial test of one discordant count.
        p = stats.binomtest(c, b + c, 0.5).pvalue if b + c > 0 else 1.0
        result["mcnemar"][item["name"]] = float(p)
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
