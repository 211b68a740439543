import os

import pytest
import torch

import aekit
from aekit import make_config
from aekit.mlpgrad import MLPStep
from aekit.models import build_model
from aekit.train import TrainConfig, gradient_step, train

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

COVERED = [
    ("mlp", {"hidden": (16, 8), "activation": "relu"}, "sigmoid", "mse"),
    ("mlp", {"hidden": (16,), "activation": "tanh"}, "sigmoid", "bce"),
    ("mlp", {"hidden": (16,), "activation": "sigmoid"}, "linear", "mse"),
    ("mlp", {"hidden": (16,), "activation": "elu"}, "linear", "mse"),
    ("mlp", {"hidden": (), "activation": "relu"}, "sigmoid", "mse"),
    ("linear", {}, "linear", "mse"),
    ("denoising", {"hidden": (16,), "noise": "gaussian"}, "sigmoid", "mse"),
    ("denoising", {"hidden": (16,), "noise": "masking", "noise_level": 0.5}, "sigmoid", "bce"),
    ("denoising", {"hidden": (16,), "noise": "salt-pepper"}, "linear", "mse"),
]


def autograd_gradients(model, x, kind):
    model.zero_grad(set_to_none=True)
    loss, _ = model.loss(x, kind)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name, options, output, kind", COVERED)
def test_hand_derived_gradients_equal_autograd(name, options, output, kind):
    torch.manual_seed(0)
    model = build_model(make_config(name, input_shape=(1, 5, 6), latent_dim=3, output=output, **options)).to(DEVICE)
    x = (torch.rand(37, 1, 5, 6) if output == "sigmoid" else torch.randn(37, 1, 5, 6)).to(DEVICE)
    step = MLPStep.of(model, kind)
    assert step is not None
    torch.manual_seed(1)  # the denoising noise: both draw the same numbers
    expected_loss, expected = autograd_gradients(model, x, kind)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    loss, terms = step(x)
    assert terms == {} and not loss.requires_grad
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-5)
    for p, want in zip(model.parameters(), expected, strict=True):
        assert p.grad.shape == p.shape and p.grad.is_contiguous()
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, options", [("mlp", {"activation": "gelu"}), ("conv", {}), ("vae", {}), ("sparse", {}),
                                           ("vq", {"codebook_size": 4, "groups": 1})])  # fmt: skip
def test_other_models_take_the_autograd_step(name, options):
    model = build_model(make_config(name, input_shape=(1, 8, 8), latent_dim=2, **options))
    assert MLPStep.of(model, "mse") is None
    assert gradient_step(model, None, None, "mse", 1).__name__ == "autograd_step"


def test_a_subclass_or_several_processes_take_the_autograd_step():
    class Custom(aekit.AutoEncoder):
        pass

    config = make_config("mlp", input_shape=(1, 4, 4), latent_dim=2, hidden=(8,))
    assert isinstance(gradient_step(build_model(config), None, None, "mse", 1), MLPStep)
    assert gradient_step(Custom.from_config(config), None, None, "mse", 1).__name__ == "autograd_step"
    assert gradient_step(build_model(config), None, None, "mse", 2).__name__ == "autograd_step"


def test_training_does_not_depend_on_which_step_ran(digits):
    """Two epochs with hand-derived gradients and with autograd (a subclass takes it) end at the same losses."""

    class ThroughAutograd(aekit.AutoEncoder):
        pass

    config, histories = make_config("denoising", input_shape=digits.input_shape, latent_dim=4, hidden=(16,)), []
    for cls in (aekit.AutoEncoder, ThroughAutograd):
        torch.manual_seed(0)
        histories.append(train(cls.from_config(config), digits, TrainConfig(epochs=2, seed=3, device=DEVICE),
                               progress=False))
    for manual, auto in zip(*histories, strict=True):
        assert manual["train_loss"] == pytest.approx(auto["train_loss"], rel=1e-4)
        assert manual["test_mse_per_pixel"] == pytest.approx(auto["test_mse_per_pixel"], rel=1e-4)


@pytest.mark.parametrize("name, options, output, kind", COVERED)
def test_the_evaluation_forward_equals_the_model(name, options, output, kind):
    from aekit.mlpgrad import layers_of, reconstruct_rows

    torch.manual_seed(0)
    model = build_model(make_config(name, input_shape=(1, 5, 6), latent_dim=3, output=output, **options))
    model = model.to(DEVICE).eval()
    x = torch.rand(37, 1, 5, 6, device=DEVICE)
    with torch.no_grad():
        torch.testing.assert_close(reconstruct_rows(model, layers_of(model), x), model(x).reshape(37, -1),
                                   rtol=1e-6, atol=1e-7)  # fmt: skip
