"""
A real table as it comes: categorical columns and missing values, no preprocessing
==================================================================================

The Palmer penguins table (``palmerpenguins``, bundled with the package) has
three categorical columns (species, island, sex) and missing entries (sex is
missing for 11 birds, the measurements for 2). The script

1. fits ``PAE()`` on the DataFrame as it is and prints the most unusual
   penguins by ``score_samples`` (a joint log-likelihood: log-probabilities of
   the categories plus log-densities of the measurements, missing entries left
   out), and what the model reconstructs for one bird's missing sex;
2. removes 20% of the measurements at random and compares
   ``make_pipeline(PAEImputer(), HistGradientBoostingClassifier())`` with
   scikit-learn's imputers, predicting the species from the measurements;
3. draws the imputed flipper lengths with their 90% posterior intervals
   against the removed values.

Run: ``python examples/plot_mixed_table.py`` (under a minute on 2 CPU cores);
the figure goes to ``mixed_table.png`` (``--output``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skprobae import PAE, PAEImputer
from skprobae.datasets import load_penguins

MEASUREMENTS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def load_table():
    return load_penguins()


def outliers(table) -> None:
    model = PAE(max_epochs=60, flow_max_epochs=60, random_state=0).fit(table)
    scores = model.score_samples(table)
    print(
        f"PAE on the raw DataFrame: {model.n_components_} latent dimensions, categorical columns "
        f"{list(table.columns[model.is_categorical_])}"
    )
    print("The five most unusual penguins (lowest log-likelihood):")
    print(table.assign(score=scores.round(1)).nsmallest(5, "score").to_string())
    bird = table[table["sex"].isna() & table["bill_length_mm"].notna()].iloc[:1]
    sex_probabilities = model.predict_category_proba(bird)[list(table.columns[model.is_categorical_]).index("sex")]
    female, male = sex_probabilities[0]
    print(
        f"\nBird {bird.index[0]} has no recorded sex; the decoder's categorical distribution at its code gives "
        f"P(female) = {female:.3f}, P(male) = {male:.3f}.\n(These are the reconstruction's probabilities, which an "
        "autoencoder that saw every observed sex in training makes near-certain: not a calibrated conditional.)"
    )


def imputation(table, output: Path) -> None:
    complete = table.dropna()
    X, y = complete[MEASUREMENTS].to_numpy(float), complete["species"].cat.codes.to_numpy()
    removed = np.random.default_rng(0).random(X.shape) < 0.2
    X_missing = np.where(removed, np.nan, X)
    imputers = {
        "SimpleImputer(mean)": SimpleImputer(),
        "IterativeImputer": IterativeImputer(random_state=0),
        "PAEImputer": PAEImputer(max_epochs=60, flow_max_epochs=60, random_state=0),
    }
    print(f"\n{'imputer':<20s} RMSE (std. units)  species accuracy (3-fold CV)")
    for name, imputer in imputers.items():
        filled = imputer.fit_transform(X_missing)
        rmse = np.sqrt(np.mean(((filled - X) / X.std(axis=0))[removed] ** 2))
        pipeline = make_pipeline(imputer, HistGradientBoostingClassifier(random_state=0))
        accuracy = cross_val_score(pipeline, X_missing, y, cv=3).mean()
        print(f"{name:<20s} {rmse:17.3f}  {accuracy:.3f}")
    imputer = imputers["PAEImputer"]
    filled, std = imputer.transform(X_missing, return_std=True)
    coverage = np.mean(np.abs(filled - X)[removed] <= 1.645 * std[removed])
    print(f"PAEImputer's 90% intervals cover {coverage:.2f} of the removed entries")
    plot(X[:, 2], filled[:, 2], std[:, 2], removed[:, 2], complete["species"].to_numpy(), output)


def plot(truth, filled, std, removed, species, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(truth[removed])
    fig, ax = plt.subplots(figsize=(8, 4))
    positions = np.arange(removed.sum())
    for name, colour in zip(("Adelie", "Chinstrap", "Gentoo"), ("C0", "C1", "C2"), strict=True):
        of = species[removed][order] == name
        ax.errorbar(
            positions[of],
            filled[removed][order][of],
            yerr=1.645 * std[removed][order][of],
            fmt="o",
            ms=3,
            color=colour,
            alpha=0.7,
            label=f"{name}: imputed, 90% interval",
        )
    ax.plot(positions, truth[removed][order], "k.", ms=4, label="removed value")
    ax.set_xlabel("penguins whose flipper length was removed (sorted by the true value)")
    ax.set_ylabel("flipper length (mm)")
    ax.set_title("PAEImputer on the penguins: posterior means and 90% intervals")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    print(f"wrote {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description="an skprobae gallery example")
    parser.add_argument("--output", type=Path, default=Path("mixed_table.png"))
    args = parser.parse_args()
    table = load_table()
    outliers(table)
    imputation(table, args.output)


if __name__ == "__main__":
    main()
