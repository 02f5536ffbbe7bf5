"""The drift references stored with each version at training time, so a drift check only reads Parquet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.core.features import TARGET_COLUMN

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.config import ProjectConfig


def reference_profile(features: pd.DataFrame, spec: Any, bins: int = 20, top: int = 50) -> dict[str, Any]:
    """Feature distributions of the training data, stored with the model for drift checks."""
    import numpy as np

    profile: dict[str, Any] = {"rows": len(features), "numeric": {}, "categorical": {}}
    for col in spec.numeric_out:
        v = features[col].to_numpy(dtype="float64", na_value=np.nan)
        ok = v[~np.isnan(v)]
        if len(ok):
            edges = np.unique(np.quantile(ok, np.linspace(0, 1, bins + 1)))
            counts, _ = np.histogram(ok, bins=edges) if len(edges) > 1 else (np.array([len(ok)]), None)
        else:
            edges, counts = np.array([]), np.array([])
        profile["numeric"][col] = {
            "null_share": float(np.isnan(v).mean()) if len(v) else 0.0,
            "mean": float(ok.mean()) if len(ok) else None,
            "std": float(ok.std()) if len(ok) else None,
            "quantiles": {str(q): float(np.quantile(ok, q)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)}
            if len(ok)
            else {},
            "bin_edges": edges.tolist(),
            "bin_counts": counts.tolist(),
        }
    for col in spec.categorical_out:
        counts = features[col].fillna("<null>").astype(str).value_counts()
        shares = (counts / max(len(features), 1)).round(6)
        profile["categorical"][col] = {
            "top": shares.head(top).to_dict(),
            "other_share": float(shares.iloc[top:].sum()),
            "distinct": len(counts),
        }
    return profile


def drift_reference(project: ProjectConfig, spec: Any, rows: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    """A seeded sample of the training rows as the drift step needs them: features and label.

    Features are computed here, once per version, so a daily drift check
    only loads a Parquet file. ``drift.reference_sample_rows`` bounds its
    size. (The score's reference is the holdout's, out of sample: scores on
    training rows are sharper than any live day's.)
    """
    from pipelines.core.features import make_features

    n = min(len(rows), project.drift.reference_sample_rows)
    sample = rows.sample(n=n, random_state=0).sort_index()
    frame = make_features(sample, spec).reset_index(drop=True)
    frame[TARGET_COLUMN] = y.loc[sample.index].to_numpy(dtype="float64")
    return frame
