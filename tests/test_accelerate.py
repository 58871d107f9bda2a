"""Data-parallel training through accelerate (skorch's AccelerateMixin): two CPU processes on gloo."""

import json
import pickle
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.base import clone

from skprobae import PAE, ProbabilisticAutoencoder

pytest.importorskip("accelerate")

PARAMS = {
    "n_components": 2,
    "hidden_layer_sizes": (16,),
    "max_epochs": 3,
    "batch_size": 64,
    "n_iter_no_change": None,
    "validation_fraction": 0.0,
    "random_state": 0,
}


def _data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(600, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(600, 6))).astype(np.float32)


_RANK_SCRIPT = textwrap.dedent(
    """
    import json, pickle, sys
    import numpy as np
    import torch.distributed as dist
    from skprobae import PAE, ProbabilisticAutoencoder
    from skprobae._engine import RowBatches

    out, params = sys.argv[1], json.loads(sys.argv[2])
    params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(600, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(600, 6))).astype(np.float32)
    rows = []
    read = RowBatches._read

    def recording(self, index):
        if self.shuffle:
            rows.extend(int(i) for i in index)
        return read(self, index)

    RowBatches._read = recording
    model = ProbabilisticAutoencoder(accelerator={"cpu": True}, **params).fit(X)
    rank = dist.get_rank()
    pae = PAE(accelerator={"cpu": True}, flow_max_epochs=2, flow_hidden_layer_sizes=(8,), **params).fit(X)
    report = {
        "rank": rank,
        "world": dist.get_world_size(),
        "rows": rows,
        "history": list(model.history_[:, "train_loss"]),
        "flow_history": list(pae.flow_history_[:, "train_loss"]),
    }
    np.save(f"{out}/scores_{rank}.npy", model.score_samples(X))
    np.save(f"{out}/pae_scores_{rank}.npy", pae.score_samples(X))
    json.dump(report, open(f"{out}/rank_{rank}.json", "w"))
    pickle.dump(model, open(f"{out}/model_{rank}.pkl", "wb"))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_on_different_rows_and_match_one_process(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT)
    params = {**PARAMS, "hidden_layer_sizes": list(PARAMS["hidden_layer_sizes"])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    command += [str(_free_port()), str(script), str(tmp_path), json.dumps(params)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank_{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    # Each process read its own half of every batch: disjoint within an epoch, together every row.
    first_epoch = [set(r["rows"][:300]) for r in reports]
    assert not first_epoch[0] & first_epoch[1] and first_epoch[0] | first_epoch[1] == set(range(600))
    # Loss sums are reduced over the processes: one history, one early-stopping decision.
    assert reports[0]["history"] == reports[1]["history"]
    assert reports[0]["flow_history"] == reports[1]["flow_history"]
    scores = [np.load(tmp_path / f"scores_{rank}.npy") for rank in (0, 1)]
    np.testing.assert_array_equal(scores[0], scores[1])  # the gradients are averaged: one model
    pae_scores = [np.load(tmp_path / f"pae_scores_{rank}.npy") for rank in (0, 1)]
    np.testing.assert_array_equal(pae_scores[0], pae_scores[1])
    # The same global batch in one process: the same model up to float32 rounding of the gradient sums.
    single = ProbabilisticAutoencoder(**PARAMS).fit(_data())
    np.testing.assert_allclose(reports[0]["history"], single.history_[:, "train_loss"], rtol=1e-5)
    np.testing.assert_allclose(scores[0], single.score_samples(_data()), rtol=1e-5)
    # The fitted model is a plain one: it unpickles and scores in this process, without a process group.
    restored = pickle.loads((tmp_path / "model_0.pkl").read_bytes())
    assert type(restored.net_).__name__ == "LikelihoodNet"
    np.testing.assert_array_equal(restored.score_samples(_data()), scores[0])


def test_one_process_with_an_accelerator_fits_as_without():
    X = _data()
    accelerated = ProbabilisticAutoencoder(accelerator={"cpu": True}, **PARAMS).fit(X)
    plain = ProbabilisticAutoencoder(**PARAMS).fit(X)
    np.testing.assert_allclose(accelerated.score_samples(X), plain.score_samples(X), rtol=1e-6)
    assert type(accelerated.net_).__name__ == "LikelihoodNet"
    pickle.loads(pickle.dumps(accelerated))
    assert clone(accelerated).get_params()["accelerator"] == {"cpu": True}  # a dict: clone-safe


def test_accelerators_it_cannot_use_raise_at_fit_before_training():
    from accelerate import Accelerator

    X = _data()
    with pytest.raises(ValueError, match=r"'accelerator' parameter .* must be an instance of 'dict'"):
        ProbabilisticAutoencoder(accelerator=Accelerator(cpu=True), **PARAMS).fit(X)
    with pytest.raises(ValueError, match=r"does not make an accelerate\.Accelerator"):
        ProbabilisticAutoencoder(accelerator={"bogus_option": 1}, **PARAMS).fit(X)
    with pytest.raises(ValueError, match=r"give the accelerator its mixed precision instead"):
        ProbabilisticAutoencoder(accelerator=True, mixed_precision="bf16", **PARAMS).fit(X)
    model = PAE(warm_start=True, flow_max_epochs=1, **PARAMS).fit(X)
    with pytest.raises(ValueError, match="warm_start and partial_fit continue in one process"):
        model.set_params(accelerator=True).fit(X)
