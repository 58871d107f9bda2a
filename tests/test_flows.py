import numpy as np
import pytest
import torch

from skprobae.flows import FlowAdapter, LatentFlow, build_flow


@pytest.mark.parametrize("kind", ["realnvp", "maf", "nsf"])
def test_adapter_maps_are_inverse_and_log_prob_matches_zuko(kind):
    flow = build_flow(kind, 5, transforms=2, hidden_layer_sizes=(16,)).double()
    adapter = FlowAdapter(flow, 5)
    z = torch.randn(7, 5, dtype=torch.float64)
    u, log_det = adapter.to_base(z)
    torch.testing.assert_close(adapter.from_base(u), z)
    torch.testing.assert_close(adapter.log_prob(z), flow().log_prob(z))
    # log|det| agrees with a dense Jacobian.
    J = torch.autograd.functional.jacobian(lambda row: adapter.to_base(row[None])[0][0], z[0])
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(J)[1])


def test_one_dimensional_realnvp_falls_back_to_maf():
    assert type(build_flow("realnvp", 1)).__name__ == "MAF"


def test_unknown_flow_name_lists_valid_names():
    with pytest.raises(ValueError, match="realnvp, maf, nsf"):
        build_flow("glow", 3)


def test_latent_flow_jitters_only_in_training():
    module = LatentFlow(FlowAdapter(build_flow("maf", 2), 2), noise=0.5)
    z = torch.zeros(4, 2)
    module.eval()
    assert module.loss(z, z) == module.loss(z, z)
    module.train()
    torch.manual_seed(0)
    first = module.loss(z, z)
    assert not np.isclose(float(first.detach()), float(module.loss(z, z).detach()))
