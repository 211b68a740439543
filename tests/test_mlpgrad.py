import itertools
import logging
import os
from dataclasses import fields

import pytest
import torch
from torch import nn

import aekit
from aekit import make_config
from aekit.configs import TrainConfig
from aekit.model.autoencoder import build_model
from aekit.model.config import BODIES, OBJECTIVES
from aekit.model.parts import NOISES, Denoising
from aekit.training import mlpgrad
from aekit.training.loop import gradient_step, train
from aekit.training.mlpgrad import MLPStep, chain_of

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

def registry_cases():
    """Every case the registry covers: each body x objective x activation x noise x (output, loss) pair."""
    cases = []
    for body in mlpgrad.BODIES:
        activations = list(mlpgrad.ACTIVATIONS) if "activation" in {f.name for f in fields(body)} else [None]
        for objective in mlpgrad.OBJECTIVES:
            noises = list(NOISES) if objective is Denoising else [None]
            for activation, noise, (output, kind) in itertools.product(activations, noises, OUTPUT_LOSSES):
                options = {} if activation is None else {"hidden": (16, 8), "activation": activation}
                if noise is not None:
                    options.update(noise=noise, noise_level=0.3)
                cases.append((body.kind, objective.kind, options, output, kind))
    return cases


OUTPUT_LOSSES = [("sigmoid", "mse"), ("sigmoid", "bce"), ("linear", "mse")]  # bce needs a sigmoid output
COVERED = registry_cases()


def covered_model(body, objective, options, output):
    torch.manual_seed(0)
    config = make_config(body=body, objective=objective, input_shape=(1, 5, 6), latent_dim=3, output=output, **options)
    return build_model(config).to(DEVICE)


def autograd_gradients(model, x, kind):
    model.zero_grad(set_to_none=True)
    loss, _ = model.loss(x, kind)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_the_registry_has_every_case_it_names():
    assert len(COVERED) == len(mlpgrad.ACTIVATIONS) * (1 + len(NOISES)) * 3 + (1 + len(NOISES)) * 3  # mlp, linear
    assert set(mlpgrad.ACTIVATIONS) == set(mlpgrad.DERIVATIVES)  # each forward has its derivative beside it


@pytest.mark.parametrize("body, objective, options, output, kind", COVERED)
def test_hand_derived_gradients_equal_autograd(body, objective, options, output, kind):
    model = covered_model(body, objective, options, output)
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
    assert gradient_step(model, None, None, TrainConfig(), 1).__name__ == "autograd_step"


def test_a_subclass_several_processes_or_gradients_autograd_take_the_autograd_step(caplog):
    class Custom(aekit.AutoEncoder):
        pass

    config = make_config("mlp", input_shape=(1, 4, 4), latent_dim=2, hidden=(8,))
    with caplog.at_level(logging.INFO, logger="aekit.training.loop"):
        assert isinstance(gradient_step(build_model(config), None, None, TrainConfig(), 1), MLPStep)
    assert "hand-derived gradients (aekit.training.mlpgrad: mlp body, plain objective, mse loss" in caplog.text
    assert gradient_step(Custom.from_config(config), None, None, TrainConfig(), 1).__name__ == "autograd_step"
    assert gradient_step(build_model(config), None, None, TrainConfig(), 2).__name__ == "autograd_step"
    off = TrainConfig(gradients="autograd")
    assert gradient_step(build_model(config), None, None, off, 1).__name__ == "autograd_step"


def test_modules_the_registry_does_not_cover_take_autograd():
    """A layer without a bias, shared weights or a configured activation: the chain is refused, not mis-derived."""
    config = make_config("mlp", input_shape=(4,), latent_dim=4, hidden=(4,), activation="elu", output="linear")
    model = build_model(config)
    assert chain_of(model) is not None
    model.encoder[0] = nn.Linear(4, 4, bias=False)
    assert chain_of(model) is None and MLPStep.of(model, "mse") is None
    model = build_model(config)
    model.decoder[0].weight = model.encoder[0].weight  # tied: both (4, 4)
    assert chain_of(model) is None
    model = build_model(config)
    model.encoder[1] = nn.ELU(alpha=0.5)
    assert chain_of(model) is None
    model = build_model(config)
    model.encoder[1] = nn.Tanh()  # not the body's activation
    assert chain_of(model) is None


def test_the_covered_parts_options_are_frozen():
    """A new option on a covered part must be decided on in aekit.training.mlpgrad (COVERED_OPTIONS) before it trains there."""
    assert set(mlpgrad.COVERED_OPTIONS) == {*mlpgrad.BODIES, *mlpgrad.OBJECTIVES}
    for part, names in mlpgrad.COVERED_OPTIONS.items():
        assert tuple(f.name for f in fields(part)) == names, part
    assert set(mlpgrad.BODIES) <= set(BODIES.values()) and set(mlpgrad.OBJECTIVES) <= set(OBJECTIVES.values())


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


@pytest.mark.parametrize("body, objective, options, output, kind", COVERED)
def test_the_evaluation_forward_equals_the_model(body, objective, options, output, kind):
    from aekit.training.mlpgrad import reconstruct_rows

    model = covered_model(body, objective, options, output).eval()
    x = torch.rand(37, 1, 5, 6, device=DEVICE)
    with torch.no_grad():
        torch.testing.assert_close(reconstruct_rows(model, chain_of(model), x), model(x).reshape(37, -1),
                                   rtol=1e-6, atol=1e-7)  # fmt: skip


# ------------------------------------------------------------------------------------------ bf16 (aekit.training.precision)
from aekit.training import precision  # noqa: E402


@pytest.mark.parametrize("kind, output", [("mse", "sigmoid"), ("bce", "sigmoid"), ("mse", "linear")])
def test_bf16_products_give_the_fp32_gradients_to_bf16_accuracy(kind, output):
    """The wide layers' products with bf16 operands (the numbers bf16 hardware computes; any CPU can run them)."""
    torch.manual_seed(0)
    config = make_config("mlp", input_shape=(300,), latent_dim=8, hidden=(256,), output=output)
    model = build_model(config).to(DEVICE)
    x = (torch.rand(64, 300) if output == "sigmoid" else torch.randn(64, 300)).to(DEVICE)
    step = MLPStep.of(model, kind, bf16=True)
    assert step.bf16 == [True, False, False, True]  # 300-256 and 256-300 are wide; 256-8 and 8-256 are not
    expected_loss, expected = autograd_gradients(model, x, kind)
    model.zero_grad(set_to_none=True)
    loss, _ = step(x)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-2)
    for p, want in zip(model.parameters(), expected, strict=True):
        assert p.grad.dtype == torch.float32 and p.dtype == torch.float32  # master weights and gradients stay fp32
        assert float((p.grad - want).norm() / want.norm()) < 5e-2  # bf16 keeps 8 bits: ~0.4% per operand


def test_bf16_is_refused_naming_what_the_cpu_lacks_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(aekit.ConfigError, match=r"precision 'bf16' was asked for, but this CPU has neither AMX-BF16 "
                                                r"\(amx_bf16\) nor AVX512-BF16 \(avx512_bf16\)"):  # fmt: skip
        precision.resolve("bf16", torch.device("cpu"), nn.Linear(300, 300))
    assert precision.resolve("auto", torch.device("cpu"), nn.Linear(300, 300)) == "fp32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert precision.resolve("auto", torch.device("cpu"), nn.Linear(300, 300)) == "bf16"
    assert precision.resolve("auto", torch.device("cpu"), nn.Linear(300, 32)) == "fp32"  # nothing wide: no pay
    assert precision.resolve("fp32", torch.device("cpu"), nn.Linear(300, 300)) == "fp32"


def test_the_autograd_path_runs_only_the_wide_layers_in_bf16():
    torch.manual_seed(0)
    model = build_model(make_config("mlp", input_shape=(300,), latent_dim=8, hidden=(256,), activation="gelu",
                                    output="linear"))  # fmt: skip
    seen = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.dtype))
    with precision.autocast_wide_layers(model, torch.device("cpu")):
        out = model(torch.randn(16, 300))
    assert out.dtype == torch.float32
    assert seen == {"encoder.0": torch.bfloat16, "encoder.2": torch.float32, "decoder.0": torch.float32,
                    "decoder.2": torch.bfloat16}  # fmt: skip
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
