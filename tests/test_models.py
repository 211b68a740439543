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
        ({"model": "transformer"}, "unknown model 'transformer'; choose one of \\['mlp'"),
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
