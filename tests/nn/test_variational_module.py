import torch
from sklearn.datasets import load_digits

from skprobae import VAE
from skprobae.nn import LatentPrior


class _GenerousPrior(LatentPrior):
    """A (improper) prior 50 nats above N(0, I) everywhere: every Monte-Carlo KL estimate is negative."""

    def to_base(self, z):
        return z, z.new_full(z.shape[:-1], 50.0, dtype=torch.float64)

    def from_base(self, u):
        return u


def test_zero_capacity_objective_is_the_beta_elbo_even_for_a_negative_kl_estimate():
    X = load_digits().data[:200] / 16
    vae = VAE(n_components=3, hidden_layer_sizes=(16,), max_epochs=1, beta=2.0, random_state=0).fit(X)
    module = vae.net_.module_
    module.prior = _GenerousPrior(3)
    x = torch.as_tensor(X[:64], dtype=torch.float32)
    encoded = module(x)
    loss = module.loss(encoded, x)
    reconstruction, kl = module.loss_terms["reconstruction"], module.loss_terms["kl"]
    assert kl < -40
    # beta * |KL| would add +2 * 50 instead of -2 * 50 and push the posterior away from the prior.
    torch.testing.assert_close(loss.detach().double(), (reconstruction + 2.0 * kl).double(), rtol=1e-5, atol=1e-4)
