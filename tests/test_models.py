import math

import pytest
import torch

from aekit import AutoEncoder, ModelConfig, build_model, make_config
from aekit.errors import ConfigError
from aekit.model.config import PRESETS, SHORTCUTS
from aekit.model.networks import corrupt
from aekit.model.config import BODIES, OBJECTIVES
from aekit.model.parts import ConvBody, Denoising, LinearBody, MLPBody, Variational, VectorQuantized


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
    model = build_model(PRESETS[name]["model"])
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
        ({"model": "transformer"}, "unknown model 'transformer'; choose one of \\['conv', 'denoising', 'gru', 'linear'"),
        ({"body": "rnn"}, "unknown body 'rnn'; choose one of \\['conv', 'gru', 'linear', 'mlp', 'tcn'\\]"),
        ({"objective": "gan"},
         "unknown objective 'gan'; choose one of \\['denoising', 'impute', 'plain', 'rate', 'sparse', 'topk', 'vae', 'vq'\\]"),
        ({"latent_dim": 0}, "latent_dim=0 must be a positive integer"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
        ({"output": "softmax"}, "output='softmax' must be one of"),
        ({"hidden": (10, 0)}, "hidden=\\(10, 0\\) must hold positive layer widths"),
        ({"hidden": (8,) * 65}, "hidden lists 65 layers; at most 64 are allowed"),
        ({"model": "denoising", "noise": "pink"}, "noise='pink' must be one of"),
        ({"model": "denoising", "noise": "masking", "noise_level": 1.0}, "noise_level=1.0 must be a sigma >= 0"),
        ({"model": "sparse", "sparsity": -1.0}, "sparsity=-1.0 must be zero or positive"),
        ({"model": "vae", "beta": float("nan")}, "beta=nan must be zero or positive"),
        ({"model": "vq", "groups": 5}, "groups=5 must be a positive divisor of the code size latent_dim=32"),
        ({"model": "vq", "codebook_size": 0}, "codebook_size=0 must be an integer from 1"),
        ({"model": "vq", "commitment": -0.1}, "commitment=-0.1 must be zero or positive"),
        ({"model": "conv", "channels": ()}, "channels=\\(\\) must hold positive counts"),
        ({"model": "sae", "body": "conv"}, "the topk objective needs the linear body"),
        ({"model": "mlp", "objective": "rate", "lmbda": -1.0}, "lmbda=-1.0 must be zero or"),
    ],
)
def test_invalid_configs_name_the_value(changes, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**changes)


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


# ------------------------------------------------------------------------------------------ body x objective
PAIRS = [(b, o) for b in sorted(BODIES) for o in sorted(OBJECTIVES) if o != "topk" or b == "linear"]  # topk: linear


SEQUENCES = {"tcn", "gru"}  # bodies of sequences (C, L): the pairs below give them (2, 16), the others (1, 8, 8)


def example_shape(body: str, image=(1, 8, 8), sequence=(2, 16)) -> tuple[int, ...]:
    return sequence if body in SEQUENCES else image


def pair_config(body: str, objective: str, shape=None) -> ModelConfig:
    shape = shape or example_shape(body)
    options = ({"channels": (4, 8)} if body in ("conv", "tcn") else {"hidden": (16,)} if body == "mlp" else
               {"units": 8} if body == "gru" else {})  # fmt: skip
    if objective == "vq":
        options["groups"] = 2
    if objective == "topk":
        options["k"] = 2
    return make_config(body=body, objective=objective, input_shape=shape, latent_dim=4, **options)


@pytest.mark.parametrize("body, objective", PAIRS)
def test_every_pair_has_the_chapter_api_and_rebuilds_from_its_config(body, objective, tmp_path):
    config = pair_config(body, objective)
    model = build_model(config)
    assert model.config == config and build_model(model.config).config == config
    x = torch.rand(5, *config.input_shape)
    with torch.no_grad():
        assert model.encode(x).shape == (5, 4) and model.decode(model.encode(x)).shape == x.shape
        assert model(x).shape == x.shape and model(x.reshape(5, -1)).shape == (5, x[0].numel())
    loss, terms = model.loss(x)
    assert loss.ndim == 0 and all(t.ndim == 0 for t in terms.values())
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())  # the gradient reaches the encoder
    # save -> load gives identical outputs
    from aekit.run.format import load_model_tensors, load_tensors, model_tensors, save_tensors

    save_tensors(tmp_path / "m.safetensors", model_tensors(model))
    clone = build_model(config)
    load_model_tensors(clone, load_tensors(tmp_path / "m.safetensors")[0], tmp_path / "m.safetensors")
    with torch.no_grad():
        assert torch.equal(clone.eval()(x), model.eval()(x)) and torch.equal(clone.encode(x), model.encode(x))


@pytest.mark.parametrize("body, objective", PAIRS)
def test_weight_guard_counts_what_the_body_builds(body, objective):
    config = pair_config(body, objective, shape=example_shape(body, (3, 9, 7), (3, 13)))
    model = build_model(config)
    counted = config.body.n_weights(config, config.objective.code_width(config.latent_dim))
    codebook = sum(p.numel() for p in model.bottleneck.parameters()) if hasattr(model, "bottleneck") else 0
    assert counted == sum(p.numel() for p in model.parameters()) - codebook


def test_weight_guard_is_per_body():
    # a conv body on large images is small; the same images through a wide MLP are refused
    big = (3, 1000, 1000)
    assert make_config("conv", input_shape=big, channels=(8, 16)).body.n_weights is not None
    with pytest.raises(ConfigError, match="this model would have .* weights, more than the 5e\\+08 allowed"):
        make_config("mlp", input_shape=big, hidden=(512,))


@pytest.mark.parametrize(
    "model, options, message",
    [
        ("mlp", {"beta": 7.0}, "option 'beta' does not apply to a mlp body with the plain objective: it belongs to the vae objective"),
        ("mlp", {"channels": (4,)}, "option 'channels' does not apply to a mlp body .*: it belongs to the conv body"),
        ("conv", {"hidden": (4,)}, "option 'hidden' does not apply to a conv body .*: it belongs to the mlp body"),
        ("linear", {"activation": "tanh"}, "'activation' does not apply to a linear body .*: it belongs to the mlp body and the conv body"),
        ("vae", {"noise": "masking"}, "'noise' does not apply to a mlp body with the vae objective: it belongs to the denoising objective"),
        ("vq", {"sparsity": 0.1}, "'sparsity' does not apply .* it belongs to the sparse objective"),
        ("mlp", {"dropout": 0.1}, "'dropout' does not apply .*: no body or objective has it"),
    ],
)
def test_an_option_that_does_not_apply_is_refused(model, options, message):
    with pytest.raises(ConfigError, match=message):
        make_config(model, **options)


def test_shortcuts_are_pairs_and_parts_keep_or_reset_their_options():
    own = {"sae": {"k": 2}, "tcn": {"input_shape": (2, 16)}, "gru": {"input_shape": (2, 16)}}  # sequences: (C, L)
    assert {name: (c.body.kind, c.objective.kind) for name in SHORTCUTS
            for c in [make_config(name, latent_dim=8, **own.get(name, {}))]} == SHORTCUTS  # fmt: skip
    base = ModelConfig(latent_dim=30, body=MLPBody(hidden=(1000, 500)))
    assert make_config("vae", base=base).body == MLPBody(hidden=(1000, 500))  # same body kind: kept
    assert make_config("conv", base=base).body == ConvBody()  # another kind: its defaults
    config = make_config("vae", body="conv", beta=4.0, channels=(16, 32), input_shape=(1, 28, 28))
    assert config.body == ConvBody(channels=(16, 32)) and config.objective == Variational(beta=4.0)
    assert config.name == "conv+vae" and make_config("vae").name == "vae"


def test_the_chapter_call_and_the_parts_agree():
    assert AutoEncoder((1, 28, 28), 32, (256,)).config == ModelConfig()
    assert AutoEncoder(body=ConvBody((8,)), objective=Denoising("masking", 0.2)).config == make_config(
        "denoising", body="conv", channels=(8,), noise="masking", noise_level=0.2)
    with pytest.raises(ConfigError, match="give \\['hidden'\\] inside the body"):
        AutoEncoder(hidden=(8,), body=ConvBody())


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 5, 7), (1, 8, 8), (2, 1, 1)])
def test_conv_handles_any_image_size(shape):
    model = AutoEncoder(shape, latent_dim=6, body=ConvBody(channels=(4, 8)))
    x = torch.rand(3, *shape)
    with torch.no_grad():
        assert model.encode(x).shape == (3, 6)
        assert model(x).shape == x.shape
        assert model(x.reshape(3, -1)).shape == (3, math.prod(shape))


def test_conv_on_tabular_data_is_one_clear_error():
    with pytest.raises(ConfigError, match="a convolutional body needs image data \\(C, H, W\\); this data has shape \\(7,\\)"):
        make_config("conv", input_shape=(7,))
    with pytest.raises(ConfigError, match="convolutional body needs image data"):
        make_config("vae", body="conv", input_shape=(7,))


def test_linear_model_is_linear():
    model = build_model(make_config("linear", input_shape=(6,), latent_dim=2, output="linear"))
    assert LinearBody().default_output(unit_data=True) == "linear"
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert torch.allclose(model(2 * x) - model(x), model(x) - model(torch.zeros(4, 6)), atol=1e-5)


@pytest.mark.parametrize("noise, level", [("gaussian", 0.5), ("masking", 0.5), ("salt-pepper", 0.5)])
def test_corruption(noise, level):
    x = torch.full((200, 10), 0.5)
    noisy = corrupt(x, Denoising(noise, level), "sigmoid", torch.Generator().manual_seed(0))
    assert noisy.shape == x.shape and 0 <= float(noisy.min()) and float(noisy.max()) <= 1
    changed = float((noisy != x).double().mean())
    assert changed > 0.9 if noise == "gaussian" else 0.4 < changed < 0.6


def test_vae_kl_is_positive_and_encode_is_the_posterior_mean():
    model = AutoEncoder((1, 8, 8), latent_dim=3, hidden=(16,), objective=Variational())
    x = torch.rand(10, 1, 8, 8)
    _, terms = model.loss(x)
    assert terms["kl"] > 0 and terms["recon"] > 0
    with torch.no_grad():
        assert torch.equal(model.encode(x), model.config.objective.posterior(model, x)[0])
        assert not torch.equal(model.sample_codes(x), model.encode(x))


def test_vq_snaps_codes_to_the_codebook_with_a_straight_through_gradient():
    model = AutoEncoder((1, 8, 8), latent_dim=6, hidden=(16,), objective=VectorQuantized(codebook_size=5, groups=3))
    x = torch.rand(20, 1, 8, 8)
    codebook = model.bottleneck.vectors  # (5, 2)
    with torch.no_grad():
        z = model.encode(x).reshape(20, 3, 2)
        symbols = model.config.objective.symbols(model, x)
    assert symbols.shape == (20, 3) and int(symbols.max()) < 5
    assert torch.equal(z, codebook[symbols])  # every slice of every code is a codebook vector
    z_e = model.encoder(model.shaped(x)).reshape(20, 3, 1, 2)
    assert torch.equal(((z_e - codebook) ** 2).sum(-1).argmin(-1), symbols)  # and the nearest one
    loss, terms = model.loss(x)
    assert set(terms) == {"recon", "codebook", "commitment"} and torch.isclose(terms["codebook"], terms["commitment"])
    loss.backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0  # the reconstruction's gradient passed the argmin
    assert codebook.grad.abs().sum() > 0  # the codebook term moves the codebook
