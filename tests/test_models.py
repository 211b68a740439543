import math

import pytest
import torch

from aekit import AutoEncoder, ModelConfig, build_model
from aekit.errors import ConfigError
from aekit.models import PRESETS


def test_chapter_api_shapes():
    model = AutoEncoder((1, 28, 28))  # the chapter's call
    x = torch.rand(5, 1, 28, 28)
    z = model.encode(x)
    assert z.shape == (5, 32)
    assert model.decode(z).shape == (5, 1, 28, 28)
    assert model(x).shape == x.shape
    flat = x.reshape(5, 784)
    assert model(flat).shape == (5, 784)
    assert torch.equal(model.encode(flat), z)
    with torch.no_grad():
        assert 0 <= float(model(x).min()) and float(model(x).max()) <= 1  # sigmoid output


def test_linear_output_for_tabular_data():
    model = AutoEncoder((7,), latent_dim=2, hidden=(16,), output="linear")
    with torch.no_grad():
        out = model(torch.randn(64, 7) * 10)
    assert out.shape == (64, 7) and float(out.abs().max()) > 1


def test_wrong_input_size_is_named():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, 28, 28\), got \(2, 100\)"):
        AutoEncoder().encode(torch.zeros(2, 100))


@pytest.mark.parametrize("name, widths", [("chapter", (256,)), ("funnel", (256, 64)), ("hinton2006", (1000, 500, 250))])
def test_presets_build_the_named_architectures(name, widths):
    model = AutoEncoder(**PRESETS[name]["model"])
    linears = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [*widths, model.config.latent_dim]
    assert [m.in_features for m in linears][0] == 784


def test_config_rebuilds_the_model():
    model = AutoEncoder((3, 4, 4), latent_dim=5, hidden=(10, 8), activation="tanh")
    clone = build_model(model.config)
    assert clone.config == model.config
    assert [p.shape for p in clone.parameters()] == [p.shape for p in model.parameters()]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": "transformer"}, "unknown model 'transformer'; choose one of \\['conv', 'denoising', 'linear'"),
        ({"latent_dim": 0}, "latent_dim=0 must be a positive integer"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
        ({"output": "softmax"}, "output='softmax' must be one of"),
        ({"hidden": (10, 0)}, "hidden=\\(10, 0\\) must hold positive layer widths"),
    ],
)
def test_invalid_configs_name_the_value(changes, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**changes).validate()


def test_bce_needs_sigmoid_output():
    model = AutoEncoder((4,), latent_dim=2, hidden=(), output="linear")
    with pytest.raises(ConfigError, match="loss='bce' needs data in \\[0, 1\\]"):
        model.loss(torch.zeros(3, 4), "bce")


def test_bce_from_logits_matches_bce_on_outputs():
    model = AutoEncoder((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.rand(10, 1, 8, 8)
    loss, _ = model.loss(x, "bce")
    assert torch.allclose(loss, torch.nn.functional.binary_cross_entropy(model(x), x), atol=1e-5)
    mse, _ = model.loss(x, "mse")
    assert torch.allclose(mse, torch.nn.functional.mse_loss(model(x), x))


# ------------------------------------------------------------------------------------------ beyond the plain MLP
from aekit.models import MODELS, ConvAutoEncoder, VariationalAutoEncoder, corrupt  # noqa: E402


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 5, 7), (1, 8, 8), (2, 1, 1)])
def test_conv_handles_any_image_size(shape):
    model = ConvAutoEncoder(shape, latent_dim=6, channels=(4, 8))
    x = torch.rand(3, *shape)
    with torch.no_grad():
        assert model.encode(x).shape == (3, 6)
        assert model(x).shape == x.shape
        assert model(x.reshape(3, -1)).shape == (3, math.prod(shape))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_has_the_chapter_api_and_rebuilds_from_its_config(name):
    config = ModelConfig(model=name, input_shape=(1, 8, 8), latent_dim=4, hidden=(16,), channels=(4,))
    model = build_model(config)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert model.encode(x).shape == (5, 4) and model.decode(model.encode(x)).shape == x.shape
    loss, terms = model.loss(x)
    assert loss.ndim == 0 and all(t.ndim == 0 for t in terms.values())
    clone = build_model(model.config)
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone.encode(x), model.encode(x))


def test_conv_on_tabular_data_is_one_clear_error():
    with pytest.raises(ConfigError, match="a convolutional model needs image data \\(C, H, W\\); this data has shape \\(7,\\)"):
        ModelConfig(model="conv", input_shape=(7,)).validate()
    with pytest.raises(ConfigError, match="convolutional model needs image data"):
        ModelConfig(model="vae", body="conv", input_shape=(7,)).validate()


def test_linear_model_is_linear():
    model = build_model(ModelConfig(model="linear", input_shape=(6,), latent_dim=2, hidden=(99,)))
    assert model.config.hidden == () and model.config.output == "linear"
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert torch.allclose(model(2 * x) - model(x), model(x) - model(torch.zeros(4, 6)), atol=1e-5)


@pytest.mark.parametrize("noise, level", [("gaussian", 0.5), ("masking", 0.5), ("salt-pepper", 0.5)])
def test_corruption(noise, level):
    x = torch.full((200, 10), 0.5)
    noisy = corrupt(x, ModelConfig(noise=noise, noise_level=level), torch.Generator().manual_seed(0))
    assert noisy.shape == x.shape and 0 <= float(noisy.min()) and float(noisy.max()) <= 1
    changed = float((noisy != x).double().mean())
    assert changed > 0.9 if noise == "gaussian" else 0.4 < changed < 0.6


def test_vae_kl_is_positive_and_encode_is_the_posterior_mean():
    model = VariationalAutoEncoder((1, 8, 8), latent_dim=3, hidden=(16,))
    x = torch.rand(10, 1, 8, 8)
    _, terms = model.loss(x)
    assert terms["kl"] > 0 and terms["recon"] > 0
    with torch.no_grad():
        assert torch.equal(model.encode(x), model.posterior(x)[0])
        assert not torch.equal(model.sample_codes(x), model.encode(x))
