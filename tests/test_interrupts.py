"""A KeyboardInterrupt (Ctrl-C) during fit leaves a fully fitted model or none, and ends the whole fit."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from unittest import mock

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback

from skprobae import PAE, PAEImputer
from skprobae._base import BaseAutoencoder
from skprobae._testing import AUTOENCODERS, small


class _CtrlC(Callback):
    """Raises KeyboardInterrupt as a Ctrl-C would: at the end of ``epoch``, or in its ``batch``-th batch."""

    def __init__(self, epoch: int, batch: int | None = None):
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, net, training=False, **kwargs):
        if training and self.batch is not None and len(net.history) == self.epoch:
            self.seen_ = getattr(self, "seen_", 0) + 1
            if self.seen_ == self.batch:
                raise KeyboardInterrupt

    def on_epoch_end(self, net, **kwargs):
        if self.batch is None and len(net.history) == self.epoch:
            raise KeyboardInterrupt


def _interrupting(stage: str, epoch: int, batch: int | None = None):
    """Patch the training callbacks of every estimator so that ``stage`` is interrupted at ``epoch``."""
    callbacks = BaseAutoencoder._callbacks

    def with_ctrl_c(self, name, max_epochs, has_validation):
        extra = [("ctrl_c", _CtrlC(epoch, batch))] if name == stage else []
        return callbacks(self, name, max_epochs, has_validation) + extra

    return mock.patch.object(BaseAutoencoder, "_callbacks", with_ctrl_c)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(400, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(400, 6))).astype(np.float32)


def _final_stage(cls) -> str:
    return cls._final_stage


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_an_interrupt_in_the_last_stage_leaves_a_fully_fitted_model(cls, data):
    model = small(cls).set_params(max_epochs=8, n_iter_no_change=None)
    if cls is PAE:
        model.set_params(flow_max_epochs=8)
    expected = r"interrupted \(KeyboardInterrupt\) in epoch 3 of 8"
    with _interrupting(_final_stage(cls), epoch=3), pytest.warns(UserWarning, match=expected):
        model.fit(data)
    history = model.flow_history_ if cls is PAE else model.history_
    assert len(history) == 3  # three whole epochs, then the interrupt
    check_is_fitted(model)
    scores = model.score_samples(data)
    assert np.isfinite(scores).all() and np.isfinite(model.offset_)
    assert 0.02 < (model.predict(data) == -1).mean() < 0.3  # offset_ from a subsample, near contamination=0.1


def test_an_interrupt_inside_the_first_epoch_keeps_its_weights(data):
    model = small(PAE).set_params(flow_max_epochs=5)
    with _interrupting("latent flow", epoch=1, batch=1), pytest.warns(UserWarning, match="unfinished first epoch"):
        model.fit(data)
    assert len(model.flow_history_) == 0  # the unfinished epoch's row is dropped
    assert np.isfinite(model.score_samples(data)).all()


def test_an_interrupt_in_the_autoencoder_stage_of_pae_ends_the_fit_unfitted(data):
    # Fitted before: the interrupted refit must not leave it half fitted.
    # max_epochs=20: the first (ranking) fit of refit_on_inliers trains 2 of them, so epoch 2 is in it
    model = small(PAE).set_params(max_epochs=20, flow_max_epochs=6).fit(data)
    flow_fits = []
    fit_flow = PAE._fit_latent_flow
    with (
        _interrupting("autoencoder", epoch=2),
        mock.patch.object(PAE, "_fit_latent_flow", lambda self, *a: flow_fits.append(1) or fit_flow(self, *a)),
        pytest.raises(KeyboardInterrupt, match="interrupted in the autoencoder; the model is not fitted"),
    ):
        model.fit(data)
    assert flow_fits == []  # one Ctrl-C: the flow stage never started
    with pytest.raises(NotFittedError):
        model.score_samples(data)
    assert not hasattr(model, "net_") and not hasattr(model, "offsets_")


def test_an_interrupt_during_the_post_fit_steps_leaves_nothing_half_fitted(data):
    model = small(PAE)

    def interrupted(self, X, rng):
        raise KeyboardInterrupt

    with mock.patch.object(PAE, "_fit_offset", interrupted), pytest.raises(KeyboardInterrupt):
        model.fit(data)
    assert not [name for name in vars(model) if name.endswith("_") and not name.startswith("__")]


def test_an_interrupted_imputer_round_ends_the_whole_imputer_fit(data):
    X = data.astype(np.float64)
    X[::7, 0] = np.nan
    imputer = PAEImputer(n_rounds=3, max_epochs=5, flow_max_epochs=5, random_state=0)
    with _interrupting("latent flow", epoch=2), pytest.raises(KeyboardInterrupt):
        imputer.fit(X)
    with pytest.raises(NotFittedError):
        imputer.transform(X)


_CHILD = textwrap.dedent(
    """
    import json, signal, sys, time, warnings
    import numpy as np
    from sklearn.datasets import load_digits
    from skprobae import AEF, PAE

    # a process started in the background of a non-interactive shell inherits SIGINT ignored: take Python's own
    # handler back, as a terminal's Ctrl-C would find it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    name = sys.argv[1]
    X = load_digits().data / 16
    cls = {"AEF": AEF, "PAE": PAE}[name]
    model = cls(max_epochs=10_000, n_iter_no_change=None, random_state=0)
    print("fitting", flush=True)
    outcome = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X)
            outcome["fitted"] = True
            outcome["finite"] = bool(np.isfinite(model.score_samples(X[:50])).all())
        except KeyboardInterrupt as error:
            outcome["fitted"] = False
            outcome["error"] = str(error)
    outcome["returned_at"] = time.time()
    outcome["warnings"] = [str(w.message) for w in caught if "interrupted" in str(w.message)]
    print(json.dumps(outcome), flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["AEF", "PAE"])
def test_a_real_sigint_ends_the_fit_within_seconds(name):
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert child.stdout.readline().strip() == "fitting"
        time.sleep(3.0)  # well inside the first (and, for PAE, the autoencoder) stage of a 10,000-epoch fit
        sent = time.time()
        child.send_signal(signal.SIGINT)
        try:
            out, _ = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name}: the fit went on for 60 s after SIGINT")
        outcome = json.loads(out.strip().splitlines()[-1])
    finally:
        child.kill()
    # "a couple of seconds"; the bound leaves room for a slow, shared CI machine.
    assert outcome["returned_at"] - sent < 10.0
    if name == "AEF":  # one stage: fitted from the best weights so far, with a warning
        assert outcome["fitted"] and outcome["finite"] and len(outcome["warnings"]) == 1
    else:  # interrupted before its latent flow: not fitted, and the interrupt reaches the caller
        assert not outcome["fitted"] and "not fitted" in outcome["error"]
