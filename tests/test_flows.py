import pytest
import torch

from skprobae.flows import FlowAdapter, build_flow


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


def test_adapter_computes_in_its_dtype_over_any_leading_dims():
    adapter = FlowAdapter(build_flow("maf", 3, transforms=2, hidden_layer_sizes=(8,)), 3)  # float32
    z = torch.randn(2, 5, 3, dtype=torch.float64)
    u, log_det = adapter.to_base(z)
    assert u.shape == (2, 5, 3) and log_det.shape == (2, 5) and u.dtype == torch.float32
    flat_u, flat_log_det = adapter.to_base(z.reshape(10, 3))
    torch.testing.assert_close(u.reshape(10, 3), flat_u)
    torch.testing.assert_close(log_det.reshape(10), flat_log_det)
    assert adapter.log_prob(z).dtype == torch.float64
    torch.testing.assert_close(adapter.from_base(u), z.float(), rtol=1e-4, atol=1e-4)


def test_a_flow_without_parameters_is_accepted_and_computes_in_its_buffers_dtype():
    zuko = pytest.importorskip("zuko")
    from zuko.distributions import DiagNormal
    from zuko.transforms import DependentTransform, SoftclipTransform

    base = zuko.flows.UnconditionalDistribution(DiagNormal, torch.zeros(2), torch.ones(2), buffer=True)
    layer = zuko.flows.UnconditionalTransform(lambda: DependentTransform(SoftclipTransform(5.0), 1))
    flow = FlowAdapter(zuko.flows.Flow(transform=[layer], base=base).double(), 2)
    assert not list(flow.parameters()) and flow.dtype == torch.float64
    u, log_det = flow.to_base(torch.zeros(4, 2))
    assert u.dtype == torch.float64 and log_det.shape == (4,)
    assert flow.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 2)
