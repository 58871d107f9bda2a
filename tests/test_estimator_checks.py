"""scikit-learn's own estimator checks on every public estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skprobae import AEF, PAE, VAE, ProbabilisticAutoencoder
from skprobae.impute import PAEImputer

SMALL = {"n_components": 2, "hidden_layer_sizes": (8,), "max_epochs": 5, "random_state": 0}

ESTIMATORS = [
    ProbabilisticAutoencoder(distribution="mse", **SMALL),
    ProbabilisticAutoencoder(distribution="normal_diag", **SMALL),
    ProbabilisticAutoencoder(distribution="t_full", **SMALL),
    ProbabilisticAutoencoder(distribution="normal_diag", n_mixtures=3, **SMALL),
    # The checks' data have every width from 1 to 20 features, so the matrix family gets
    # image_shape=(1, -1): each row is a 1 x d matrix, and the row/column factor, whitening,
    # eigenvalue log-det and multivariate-gamma code all run on whatever the checks send.
    ProbabilisticAutoencoder(distribution="matrix_t_full", image_shape=(1, -1), **SMALL),
    ProbabilisticAutoencoder(distribution="matrix_normal_diag", n_mixtures=2, image_shape=(1, -1), **SMALL),
    ProbabilisticAutoencoder(distribution="maf", distribution_options={"n_point_samples": 5}, **SMALL),
    PAE(flow_max_epochs=3, flow_hidden_layer_sizes=(8,), **SMALL),
    PAE(score_method="latent", flow_max_epochs=3, flow_hidden_layer_sizes=(8,), **SMALL),
    VAE(n_importance_samples=16, **SMALL),
    VAE(
        posterior_flow="iaf",
        prior_flow="maf",
        flow_transforms=2,
        flow_hidden_layer_sizes=(8,),
        n_importance_samples=16,
        **SMALL,
    ),
    AEF(flow_transforms=2, flow_hidden_layer_sizes=(8,), n_importance_samples=16, **SMALL),
    AEF(partition="random", flow_transforms=2, flow_hidden_layer_sizes=(8,), **SMALL),
    PAEImputer(
        n_components=2,
        hidden_layer_sizes=(8,),
        flow_hidden_layer_sizes=(8,),
        max_epochs=3,
        flow_max_epochs=3,
        n_posterior_samples=10,
        posterior_steps=20,
        random_state=0,
    ),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
