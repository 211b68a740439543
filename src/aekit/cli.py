"""The ``aekit`` command: parse, build configs, call one function. Bad input is one line and exit code 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import typing
from dataclasses import fields
from pathlib import Path

from ._version import __version__
from .configs import DEVICES, PRIOR_NAMES, DataConfig, DiffusionConfig, TrainConfig
from .errors import AekitError
from .options import int_list, positive_float, positive_int
from .parts import BODIES, OBJECTIVES, PRESETS, SHORTCUTS, make_config, option_owners, part_options

# Nothing above loads torch, scikit-learn or matplotlib: `aekit --help`, `aekit COMMAND --help` and a mistyped flag
# answer at once. A command loads the run layer when it runs (:func:`runs`, :func:`report`).
OUTPUT_SUFFIXES = (".npy", ".csv", ".parquet")  # aekit.files.OUTPUT_SUFFIXES (a test keeps the two alike)
FIGURES = ("reconstructions", "samples", "latent", "interpolation", "anomalies", "curves", "denoising", "codebook",
           "features")  # aekit.plots.KINDS: the figures `aekit plot` draws (a test keeps the two alike)


def runs():
    """The run layer (:mod:`aekit.runs`), imported when a command needs it."""
    from . import runs as module

    return module


def report():
    """:mod:`aekit.report`, imported when a command needs it."""
    from . import report as module

    return module

log = logging.getLogger("aekit")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_progress_flag(parser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show progress bars (default: when the terminal is interactive)")


def add_device_flag(parser) -> None:
    parser.add_argument("--device", choices=DEVICES, help="where to train (default: auto = cuda, then mps, then cpu)")


def build_parser() -> Parser:
    parser = Parser(prog="aekit", description="Autoencoders in PyTorch: train, evaluate beside PCA, encode.")
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an expected error too "
                        "(also: AEKIT_DEBUG=1); unexpected errors always show theirs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    parser.subcommands = commands.choices  # name -> its parser (the documentation's CLI page reads them)
    add_train_parser(commands)
    add_inference_parsers(commands)
    add_figure_parsers(commands)
    add_service_parsers(commands)
    add_generation_parsers(commands)
    add_codec_parsers(commands)
    add_features_parser(commands)
    return parser


def add_train_parser(commands) -> None:
    train = commands.add_parser(
        "train", help="train an autoencoder into a run directory",
        description="Train an autoencoder and evaluate it beside PCA with the same number of components. "
        "Writes config.json, model.safetensors, checkpoint.safetensors (for --resume), history.csv and "
        "metrics.json into --out. Defaults are the chapter's: Adam, lr 1e-3, batch 128, 10 epochs, MSE.",
    )  # fmt: skip
    add_config_flags(train.add_argument_group("data"), DataConfig)
    g = train.add_argument_group(
        "model", "A model is a body (the encoder/decoder) and an objective (what training minimises); --model names "
        "a pair, --body and --objective override its parts. Each option below belongs to the parts named in its help; "
        "giving one to a model without that part is an error.")  # fmt: skip
    g.add_argument("--preset", choices=sorted(PRESETS), default="chapter",
                   help="; ".join(f"{k}: {v['help']}" for k, v in PRESETS.items()))
    g.add_argument("--model", choices=sorted(SHORTCUTS), help="; ".join(f"{k}: {b} body + {o} objective"
                   for k, (b, o) in SHORTCUTS.items()) + " (default: the preset's, mlp)")  # fmt: skip
    g.add_argument("--body", choices=sorted(BODIES), help="; ".join(f"{k}: {c.help}" for k, c in BODIES.items()))
    g.add_argument("--objective", choices=sorted(OBJECTIVES),
                   help="; ".join(f"{k}: {c.help}" for k, c in OBJECTIVES.items()))
    g.add_argument("--latent-dim", type=positive_int, metavar="K", help="code size (overrides the preset)")
    add_part_options(g)
    add_config_flags(train.add_argument_group("training", "A preset's own training settings (conv30's) apply unless "
                                              "given here."), TrainConfig)  # fmt: skip
    g = train.add_argument_group("run directory")
    g.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory (default: runs/latest)")
    g.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    g.add_argument("--analysis", action=argparse.BooleanOptionalAction, default=True, help="after the last epoch, "
                   "also the holes measure and the probes (default: on; --no-analysis: the errors beside PCA only)")
    g.add_argument("--latent-distance", action="store_true", help="also store the latent-distance anomaly score "
                   "(reconstruction error plus the code's Mahalanobis distance to the training codes, each standardized "
                   "on the training rows) in score.safetensors: aekit score, serve and export then use it")
    g.add_argument("--tensorboard", type=Path, metavar="DIR", help="also log to TensorBoard in DIR: every history "
                   "column and the learning rate per epoch, test reconstructions, and the test codes as a projector "
                   "embedding (tensorboard --logdir DIR); with --resume the curves continue (the 'tensorboard' extra)")
    add_progress_flag(g)


def add_config_flags(group, cls) -> None:
    """One flag per field of config dataclass ``cls``: its help, choices and parser from the field's ``option``
    metadata, its default shown from the field (the flag's own default is None: "not given")."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        meta, hint = f.metadata, hints[f.name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)  # X | None -> X
        parse = meta["parse"] or {int: int, float: float, str: str}[base]
        default = "" if f.default is None else f" (default: {_shown(f.default)})"
        metavar = None if meta["choices"] else meta["metavar"] or {int: "N", float: "X", str: "NAME"}[base]
        group.add_argument(meta["flag"] or flag(f.name), dest=config_dest(f), type=parse, choices=meta["choices"],
                           metavar=metavar, help=meta["help"] + default)  # fmt: skip


def config_dest(f) -> str:
    """The argparse destination of a config field's flag (``--data`` for DataConfig.name: ``data``)."""
    return (f.metadata["flag"] or flag(f.name))[2:].replace("-", "_")


def config_from_args(cls, args, base: dict | None = None):
    """``cls`` from the flags given (not None), over ``base`` (a preset's settings)."""
    given = {f.name: getattr(args, config_dest(f)) for f in fields(cls) if getattr(args, config_dest(f)) is not None}
    return cls(**{**(base or {}), **given})


def add_inference_parsers(commands) -> None:
    ev = commands.add_parser("evaluate", help="test metrics of a run beside PCA at the same code size",
                             description="Evaluate RUN on its test split: MSE per pixel, SSE per image "
                             "(Hinton & Salakhutdinov 2006's unit), BCE per pixel and PSNR, beside PCA fitted on "
                             "the same training data with as many components as the code. Writes metrics.json.")
    ev.add_argument("run", type=Path, metavar="RUN")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument("--analysis", action=argparse.BooleanOptionalAction, default=True, help="also the holes measure, "
                    "the probes and each fitted prior's sample quality (default: on; --no-analysis: the errors beside "
                    "PCA only)")
    ev.add_argument("--device", choices=DEVICES, default="auto", help="where the model runs (default: auto = cuda, "
                    "then mps, then cpu)")

    inputs = ("INPUT is a dataset name (its --split), a .npy/.npz/.csv/.parquet file, a folder of .npy shards or an "
              "image folder, shaped like the training data; .npy, shards, Parquet and image folders are read a chunk at "
              "a time.")
    for name, help_text, description, out in (
        ("encode", "write the codes (N, latent_dim) of a dataset or file",
         f"Write the codes of INPUT through RUN's encoder. {inputs} The output's suffix picks .npy, .csv or "
         ".parquet; it is written as it is computed.", "FILE.npy|FILE.csv|FILE.parquet"),
        ("reconstruct", "write the reconstructions of a dataset or file, in the data's units",
         f"Write the reconstructions of INPUT, in the data's original units. {inputs} The output's suffix picks "
         ".npy, .csv or .parquet; it is written as it is computed.", "FILE.npy|FILE.csv|FILE.parquet"),
        ("impute", "fill the missing cells of a file: a table's empty or NA cells, an array's NaN",
         "Fill the missing cells of INPUT with RUN's model (a run trained with --objective impute, which training "
         "picks by itself for data with holes); every observed cell is written back exactly as it came. A table "
         "trained from CSV or Parquet is written in its own columns, each categorical cell one of its categories; "
         "INPUT is a .csv/.parquet table with the training columns, or a .npy array with NaN where values are "
         "missing (images too: inpainting; a .png output draws them as a grid).",
         "FILE.csv|FILE.parquet|FILE.npy|FILE.png"),
        ("score", "write one anomaly score (reconstruction error) per row",
         f"Score each example of INPUT by RUN's reconstruction error: the mean squared error over its features, in "
         f"the units the model was trained in (standardized for tables, [0, 1] for images); for a run with a "
         f"stored latent-distance score (train --latent-distance, fit-score), that error plus the code's distance, "
         f"each standardized on the training rows. Higher is more abnormal. {inputs} Writes a CSV (header 'score', and 'outlier' with --contamination or --threshold), a "
         f".npy array or a Parquet table, by the output's suffix.",
         "FILE.csv|FILE.npy|FILE.parquet"),
    ):  # fmt: skip
        p = commands.add_parser(name, help=help_text, description=description)
        add_rows_flags(p, out, split=name != "impute")
        if name == "score":
            label = p.add_mutually_exclusive_group()
            label.add_argument("--contamination", type=positive_float, metavar="C", help="add an 'outlier' column "
                               "(1 or 0): 1 above the (1 - C) quantile of the scores of RUN's own training data")
            label.add_argument("--threshold", type=float, metavar="T", help="add an 'outlier' column: 1 for scores "
                               "above T")
            p.add_argument("--per-feature", action="store_true", help="also write each row's error per feature "
                           "(columns e0, e1, ...: the squared error divided by the number of features, which sum to "
                           "the score): where a row is abnormal")



def add_rows_flags(p, out: str, split: bool) -> None:
    """RUN, --input, --split (a dataset's), --out and --device of a command that reads rows and writes rows."""
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--input", required=True, metavar="NAME|PATH", help="the rows: a dataset name or a file or folder, "
                   "in the data's own units; an image run takes (N, C, H, W), (N, H, W) and flat (N, C*H*W) arrays "
                   "alike (what sample, reconstruct and impute write goes back in)")  # fmt: skip
    if split:
        p.add_argument("--split", choices=("test", "train"), default="test", help="split of a named dataset")
    p.add_argument("--out", required=True, type=Path, metavar=out, help="the file to write; its suffix picks the "
                   "format (.npy arrays keep the input's shape, (N, C, H, W) for images)")  # fmt: skip
    p.add_argument("--device", choices=DEVICES, default="auto", help="where the model runs (default: auto = cuda, "
                   "then mps, then cpu)")


def add_figure_parsers(commands) -> None:
    p = commands.add_parser("plot", help="draw one of the chapter's figures for a run",
                            description="Draw a figure for RUN as PNG and SVG (default folder: RUN/figures). "
                            "reconstructions: test images, AE and PCA reconstructions with SSE per image; samples: "
                            "decoded z ~ N(0, I) beside z from a Gaussian fitted to the codes; latent: t-SNE and "
                            "PCA of 1000 test codes by label; interpolation: decoding between two codes; curves: "
                            "loss per epoch; denoising: noisy, denoised and clean test images (denoising objective); "
                            "codebook: how often each codebook vector is used (vq objective). "
                            "For error against code size see 'aekit error-vs-dim'.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("kind", choices=FIGURES, metavar="KIND", help=", ".join(FIGURES))
    p.add_argument("--out", type=Path, metavar="DIR", help="folder for the figure (default: RUN/figures)")

    p = commands.add_parser("report", help="write RUN/report.html: metrics beside PCA and every figure",
                            description="Draw every figure for RUN and write one self-contained HTML report "
                            "(figures embedded) with the config, the metrics beside PCA and the chapter's claims "
                            "in numbers.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")

    p = commands.add_parser("error-vs-dim", help="test error against code size, AE beside PCA (trains models)",
                            description="Train RUN's model at each code size (into RUN/sweep/k<d>; finished ones "
                            "are reused) and draw test SSE per image against code size beside PCA's, into "
                            "RUN/figures/error-vs-dim.png; the report picks it up. RUN's own code size is not "
                            "trained again when RUN's first --epochs epochs are that training (same settings, "
                            "schedule none, tested after that epoch): its test error then is RUN's.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--dims", type=int_list, default=(2, 4, 8, 16, 32, 64), metavar="K,K",
                   help="code sizes (default: 2,4,8,16,32,64)")
    p.add_argument("--epochs", type=positive_int, help="epochs per model (default: RUN's own)")
    add_progress_flag(p)

    p = commands.add_parser("demo", help="the chapter in one command: train, error-vs-dim sweep, report",
                            description="Train the chapter's autoencoder on the bundled MNIST, sweep the code size "
                            "beside PCA and write the report, in one process (torch, scikit-learn and matplotlib "
                            "load once: 11-14 s less than the three commands on 2 CPU cores). Each step prints "
                            "the command that does it alone: aekit train --preset chapter --out OUT, aekit "
                            "error-vs-dim OUT --epochs 3 --dims 2,8,32,64, aekit report OUT. This is what "
                            "'make demo' runs.")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default: runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs of the chapter's model (default: 10)")
    p.add_argument("--dims", type=int_list, default=(2, 8, 32, 64), metavar="K,K",
                   help="code sizes of the sweep (default: 2,8,32,64)")
    p.add_argument("--sweep-epochs", type=positive_int, default=3, metavar="N",
                   help="epochs per model of the sweep (default: 3)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="train on the first N examples only")
    add_device_flag(p)
    add_progress_flag(p)



def add_service_parsers(commands) -> None:
    p = commands.add_parser("serve", help="explore RUN's latent space in the browser and serve it over HTTP",
                            description="Start a local web app for RUN: a page to explore its latent space (map of "
                            "the test codes, sliders, drawing and erasing, interpolation, samples, a sparse "
                            "autoencoder's features, a codec's bytes) and a JSON API: POST /v1/encode, /v1/decode, "
                            "/v1/reconstruct, /v1/score, /v1/explain, /v1/impute; GET /v1/info, /healthz; the "
                            "explorer's own /v1/explore/* routes; the OpenAPI pages /docs and /redoc (served from "
                            "packaged assets: they work offline). Needs the 'serve' extra (pip install "
                            "'aekit[serve]').")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only; "
                   "another address makes the server reachable from the network: your explicit choice)")
    p.add_argument("--port", type=positive_int, default=8000, help="default: 8000")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the model runs (default: cpu)")
    p.add_argument("--tsne", action="store_true", help="also compute a t-SNE map of the codes at start (seconds)")

    p = commands.add_parser("export", help="write the model (or its encoder, decoder or score) as ONNX",
                            description="Write one part of RUN's model as an ONNX graph with a dynamic batch axis, "
                            "taking raw inputs (a standardized run's scaling is folded in): encoder x -> z (a VAE's "
                            "posterior mean), decoder z -> x_hat, autoencoder x -> x_hat, score x -> the anomaly score "
                            "as 'aekit score' writes it (with the run's latent-distance score if it has one). Needs the 'onnx' extra "
                            "(pip install 'aekit[onnx]').")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--part", choices=("encoder", "decoder", "autoencoder", "score"), default="autoencoder",
                   help="which graph (default: autoencoder)")

    p = commands.add_parser("fit-score", help="store RUN's anomaly score (score, serve, export and report use it)",
                            description="Fit the anomaly score on RUN's training rows and store it in "
                            "RUN/score.safetensors. By default it is the latent-distance score: a row's reconstruction "
                            "error plus its code's squared Mahalanobis distance to the training codes, each standardized "
                            "on the training rows. --code-neighbors K takes the mean distance to the K nearest "
                            "training codes instead, --error-blur W blurs the residual over a WxW window first "
                            "(images). From then on aekit score, /v1/score, the report and the exported score graph "
                            "compute it, as AutoEncoderOutlierDetector(latent_distance=True, error_blur=W, "
                            "code_neighbors=K) does; that detector's recipe on MNIST's one-class protocol is "
                            "--error-blur 3 --code-neighbors 5.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--error-blur", type=positive_int, default=1, metavar="W",
                   help="average the residual over a WxW window before squaring (odd; images; default: 1, none)")
    p.add_argument("--code-neighbors", type=int, default=0, metavar="K",
                   help="the code's distance is its mean distance to the K nearest training codes (default: 0, the "
                   "Gaussian's Mahalanobis distance)")
    p.add_argument("--latent-distance", action=argparse.BooleanOptionalAction, default=True,
                   help="add the code's distance to the reconstruction error (default: on; --no-latent-distance "
                   "keeps the error alone, blurred with --error-blur)")

    commands.add_parser("datasets", help="list the built-in datasets and the file formats accepted",
                        description="List the built-in datasets, where MNIST is found, and the accepted files.")


def add_generation_parsers(commands) -> None:
    fitted = [name for name in PRIOR_NAMES if name != "normal"]
    p = commands.add_parser("fit-prior", help="fit a latent prior to RUN's training codes, to sample from it",
                            description="Fit a distribution to the codes of RUN's training rows and store it in "
                            "RUN/priors/ (JSON + safetensors; no other file of the run changes). Decoding z drawn "
                            "from it gives new examples (aekit sample): gaussian, one full-covariance Gaussian; gmm, "
                            "a mixture of --components of them (Ghosh et al. 2020); diffusion, a small denoising "
                            "diffusion model of the codes (about a minute or two for MNIST's 60,000 codes on 2 CPU "
                            "cores). With --conditional the prior is fitted per label, so samples of one class can be "
                            "asked for (--label). 'normal' (N(0, I)) needs no fitting. aekit evaluate then measures "
                            "every prior's samples beside the floor.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--prior", required=True, choices=fitted, help="which prior to fit")
    p.add_argument("--components", type=positive_int, default=10, help="gmm: components (per label with "
                   "--conditional; default: 10)")
    p.add_argument("--conditional", action="store_true", help="one prior per label of the training data")
    p.add_argument("--epochs", type=positive_int, default=DiffusionConfig.epochs,
                   help=f"diffusion: passes over the codes (default: {DiffusionConfig.epochs})")
    p.add_argument("--seed", type=int, default=0, help="seeds the fit (default: 0)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the model encodes (default: cpu)")
    add_progress_flag(p)

    p = commands.add_parser("sample", help="decode codes drawn from a prior: new examples",
                            description="Draw N codes from one of RUN's priors and decode them. A .png gets a grid of "
                            "the images; a .npy an (N, *input_shape) float32 array (images: (N, C, H, W)) in the data's "
                            "own units (pixels in [0, 1]); .csv and .parquet flat rows, or a table run's own columns. "
                            "Every command takes these files back as input. The same --seed gives the same "
                            "file. 'normal' is N(0, I) (the chapter's holes, for a plain autoencoder); the others are "
                            "fitted first with aekit fit-prior.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--prior", choices=PRIOR_NAMES, default="normal", help="default: normal")
    p.add_argument("--n", type=int, default=64, help="how many samples (default: 64)")
    p.add_argument("--label", type=int, help="a class of the training labels (a prior fitted with --conditional)")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--guidance", type=float, help="with --label, a conditional diffusion prior's classifier-free "
                   "guidance scale (default 1: none; 1.5 made 99.7%% of MNIST samples the asked digit, against 95.3%%)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.png|FILE.npy|FILE.csv|FILE.parquet",
                   help="where the samples go: a .png grid, or rows in the data's units")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the model decodes (default: cpu)")


def add_codec_parsers(commands) -> None:
    p = commands.add_parser("compress", help="write rows as a compressed file with a codec run (--preset codec)",
                            description="Encode INPUT with RUN's codec (a run trained with --preset codec or --objective "
                            "rate): each row's integer code, entropy coded under the run's frozen probability tables "
                            "(constriction's ANS coder: the 'codec' extra), in one file with a header (magic, format, "
                            "the model's SHA-256, shapes, CRC-32). Prints the bytes per row beside the rate the "
                            "model estimated, and the PSNR of the decoded rows.")  # fmt: skip
    add_rows_flags(p, "FILE.aek", split=True)
    p.add_argument("--per-item", action="store_true", help="one stream per row, each decodable alone (about 5 bytes "
                   "more per row); default: one stream for all")

    p = commands.add_parser("decompress", help="decode a compressed file back to rows",
                            description="Decode FILE (written by aekit compress with the same RUN) into the data's "
                            "units: a .npy array (N, *input_shape), a .png grid, or a folder of PNGs (an --out "
                            "without a suffix), one per row. A file of another model, of a newer format, damaged or "
                            "cut short is refused in one line.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.npy|FILE.png|FOLDER",
                   help="a .npy array (N, *input_shape), a .png grid, or a folder (no suffix) of one PNG per row")


def add_features_parser(commands) -> None:
    p = commands.add_parser("features", help="write a sparse autoencoder's features: one direction per latent",
                            description="Write the features of RUN, a sparse autoencoder (--model sae): each latent's "
                            "decoder direction in the data's units (unit norm), as an (L, *input_shape) .npy array "
                            "(or L flat rows in a .csv or .parquet table). Prints how often the latents fire on the "
                            "test rows and how many never do; the report draws each latent's direction and the test "
                            "rows it is most active on.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.npy|FILE.csv|FILE.parquet",
                   help="where the directions go: (L, *input_shape) in a .npy, or L flat rows in a table")


def cmd_features(args) -> int:
    check_output_path(args.out)
    run = runs().load_run(args.run)
    features = run.features()
    runs().write_rows(features["directions"], args.out)
    firing = features["firing"]
    print(f"wrote {len(firing)} feature directions {features['directions'].shape} to {args.out}; on the test rows "
          f"{int((firing == 0).sum())} never fire, the others fire on {float(firing[firing > 0].min(initial=0)):.2%} to "
          f"{float(firing.max()):.2%} of rows")  # fmt: skip
    return 0


def cmd_compress(args) -> int:
    if args.out.is_dir():
        raise AekitError(f"--out {args.out}: is a folder; give a file name")
    run = runs().load_run(args.run, args.device)
    payload, summary = run.compress_input(args.input, args.split, per_item=args.per_item)
    runs().write_bytes(args.out, payload)
    n, size, estimated = summary["rows"], summary["bytes"], summary["estimated_bytes"]
    quality = f"PSNR {summary['psnr']:.2f} dB" if "psnr" in summary else f"MSE per feature {summary['mse']:.5g}"
    print(f"wrote {args.out}: {n} rows in {size} bytes, {size / n:.2f} bytes per row (the model estimated "
          f"{estimated / n:.2f}: file / estimate {size / estimated:.4f}); decoded: {quality}")  # fmt: skip
    return 0


def cmd_decompress(args) -> int:
    suffix = args.out.suffix.lower()
    if suffix not in (".npy", ".png", ""):
        raise AekitError(f"--out {args.out}: write a .npy array, a .png grid or a folder (no suffix) of PNGs")
    run = runs().load_run(args.run)
    x = run.decompress(runs().read_bytes(args.file), str(args.file))
    if suffix == "":
        if not run.is_image:
            raise AekitError(f"--out {args.out}: a folder of PNGs needs image data; write a .npy")
        runs().write_image_folder(x, args.out)
    else:
        check_grid_fits(args.out, run)
        runs().write_rows(x, args.out)
    print(f"wrote {len(x)} rows decoded from {args.file} to {args.out}")
    return 0


def cmd_fit_prior(args) -> int:
    run = runs().load_run(args.run, args.device)
    prior = run.fit_prior(args.prior, args.conditional, args.components, args.seed,
                          DiffusionConfig(epochs=args.epochs), progress_wanted(args))  # fmt: skip
    quality = run.prior_quality(args.prior)
    print(f"fitted the {args.prior} prior ({prior.summary()}) in {prior.fit_seconds:.1f} s; stored in "
          f"{args.run}/priors/{args.prior}.json; its samples: FD {quality[f'gen_{args.prior}_fd']:.2f} (floor "
          f"{quality['gen_floor_fd']:.2f}, the training rows); sample with: aekit sample {args.run} --prior "
          f"{args.prior} --n 64 --out samples.png")  # fmt: skip
    return 0


def cmd_sample(args) -> int:
    check_grid_or_rows_output(args.out)
    if not os.access(args.out.parent if str(args.out.parent) else Path("."), os.W_OK):
        raise AekitError(f"--out {args.out}: its folder {args.out.parent} does not exist or is not writable")
    run = runs().load_run(args.run, args.device)
    check_grid_fits(args.out, run)
    x = run.sample(args.n, args.prior, args.label, args.seed, args.guidance)
    runs().write_rows(x, args.out, run.model_config.columns)
    label = "" if args.label is None else f" of label {args.label}"
    print(f"wrote {len(x)} samples{label} from the {args.prior} prior (seed {args.seed}) to {args.out}")
    return 0


def cmd_train(args) -> int:
    preset = PRESETS[args.preset]
    if args.resume is not None:
        refuse_settings_on_resume(args)
    options = {name: getattr(args, name) for name in part_options() if getattr(args, name) is not None}
    if args.latent_dim is not None:
        options["latent_dim"] = args.latent_dim
    model_config = make_config(args.model, body=args.body, objective=args.objective, base=preset["model"],
                               spell=flag, **options)  # fmt: skip
    train_config = config_from_args(TrainConfig, args, preset.get("train", {}))  # explicit options beat the preset
    out = args.resume or args.out
    history, metrics = runs().train_run(
        out, model_config, config_from_args(DataConfig, args), train_config, resume=args.resume is not None,
        overwrite=args.overwrite, progress=progress_wanted(args), epochs=args.epochs if args.resume else None,
        device=args.device if args.resume else None, tensorboard=args.tensorboard, analysis=args.analysis,
        latent_distance=args.latent_distance,
    )  # fmt: skip
    if metrics:  # under torchrun, only rank 0 evaluates and reports
        print(report().format_metrics(metrics))
        print(f"run saved in {out}/ (config.json, model.safetensors, history.csv, metrics.json)")
    return 0


def progress_wanted(args) -> bool | None:
    """``--progress`` / ``--no-progress``, or None: bars where the output is a terminal (:mod:`aekit.progress`)."""
    return args.progress


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_part_options(group) -> None:
    """One flag per body/objective option, its type, choices, help and default read from the dataclass field."""
    for name, owners in part_options().items():
        spec = next(f for f in fields(owners[0]) if f.name == name)
        hint = typing.get_type_hints(owners[0])[name]
        defaults = dict.fromkeys(_shown(next(f for f in fields(p) if f.name == name).default) for p in owners)
        convert = {int: int, float: float, str: str}.get(hint, int_list)
        metavar = None if spec.metadata["choices"] else {int: "N", float: "X", str: "NAME"}.get(hint, "N,N")
        where = " and ".join(owner.replace("the ", "") for owner in option_owners(name))
        group.add_argument(flag(name), type=convert, choices=spec.metadata["choices"], metavar=metavar,
                           help=f"{spec.metadata['help']} ({where}; default: {' / '.join(defaults)})")  # fmt: skip


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)


RESUME_MAY_CHANGE = {"resume", "epochs", "device", "progress", "command", "out", "overwrite", "preset", "debug",
                     "tensorboard", "latent_distance", "analysis"}


def refuse_settings_on_resume(args) -> None:
    """--resume continues with the run's stored settings; any other setting given with it would be dropped."""
    defaults = vars(build_parser().parse_args(["train"]))
    given = [flag(dest) for dest, value in vars(args).items() if dest not in RESUME_MAY_CHANGE and value != defaults[dest]]
    if given:
        raise AekitError(f"--resume continues {args.resume} with its stored settings; only --epochs and --device may "
                         f"change (drop {', '.join(given)})")  # fmt: skip


def cmd_evaluate(args) -> int:
    metrics = runs().evaluate_run(args.run, args.device, analysis=args.analysis)
    print(json.dumps(metrics, indent=2) if args.json else report().format_metrics(metrics))
    return 0


def progress_bar(total: int, what: str):
    return runs().progress_bar(total=total, unit="row", desc=what, leave=False)


def check_grid_or_rows_output(out: Path) -> None:
    """An output of rows (:func:`check_output_path`) or a ``.png`` grid of images, checked before any work."""
    if out.suffix.lower() not in (*OUTPUT_SUFFIXES, ".png"):
        raise AekitError(f"--out {out}: unsupported output type {out.suffix or '(none)'!r}; use "
                         f"{' or '.join((*OUTPUT_SUFFIXES, '.png'))}")  # fmt: skip
    if out.is_dir():
        raise AekitError(f"--out {out}: is a folder; give a file name")


def check_grid_fits(out: Path, run) -> None:
    if out.suffix.lower() == ".png" and not run.is_image:
        raise AekitError(f"--out {out}: a .png grid needs image data; this model's input is "
                         f"{run.model_config.input_shape} (write .npy, .csv or .parquet)")  # fmt: skip


def cmd_impute(args) -> int:
    check_grid_or_rows_output(args.out)
    run = runs().load_run(args.run, args.device)
    check_grid_fits(args.out, run)
    cells, rows = run.impute_file(args.input, args.out)
    print(f"filled {cells} missing cells of {rows} rows; wrote {args.out}")
    return 0


def cmd_encode_or_reconstruct(args) -> int:
    check_output_path(args.out)
    run = runs().load_run(args.run, args.device)
    n, chunks = run.chunks(args.input, args.split)
    encode = args.command == "encode"
    shape = (run.model_config.latent_dim,) if encode else run.model_config.input_shape
    if run.model_config.columns and not encode:  # a table: written whole in its own columns and categories
        import numpy as np

        runs().write_rows(np.concatenate([run.reconstruct(x).numpy() for x in chunks]), args.out,
                          run.model_config.columns)  # fmt: skip
        print(f"wrote reconstructions of {n} rows to {args.out}")
        return 0
    from .stream import RowWriter

    with RowWriter(args.out, n, shape) as out, progress_bar(n, args.command) as bar:
        for x in chunks:
            out.write((run.encode(x) if encode else run.reconstruct(x)).numpy())
            bar.update(len(x))
    print(f"wrote {'codes' if encode else 'reconstructions'} of shape {(n, *shape)} to {args.out}")
    return 0


def check_output_path(out: Path) -> None:
    """Refuse an output whose suffix aekit does not write, or that is a folder, before any work is done."""
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise AekitError(f"--out {out}: unsupported output type {out.suffix or '(none)'!r}; use "
                         f"{' or '.join(OUTPUT_SUFFIXES)}")  # fmt: skip
    if out.is_dir():
        raise AekitError(f"--out {out}: is a folder; give a file name")


def cmd_datasets(args) -> int:
    from .data import DATASETS, SOURCES

    for name, (_, help_text) in sorted(DATASETS.items()):
        print(f"{name:<8} {help_text}")
    print(f"\n{runs().mnist_location()}")
    print("search order: --data-dir, $AEKIT_DATA, the bundled copy, the user cache; then a checked download")
    print("\nyour own data (--data PATH), the first kind that takes the path reads it:")
    for source in SOURCES:
        print(f"  {source.kind:<8} {source.help}")
    print("A .npy, Parquet, shard or image folder source over 2 GiB (as float32) is streamed from disk in chunks.")
    return 0


def cmd_score(args) -> int:
    check_output_path(args.out)
    run = runs().load_run(args.run, args.device)
    threshold = args.threshold if args.contamination is None else run.threshold(args.contamination)
    n, chunks = run.chunks(args.input, args.split)
    header = ["score"] if threshold is None else ["score", "outlier"]
    per_feature = [f"e{j}" for j in range(run.width)] if args.per_feature else []
    width = len(header) + len(per_feature)
    kept, flagged = [], 0  # a sample of the scores for the summary line (all of them up to 1e6 rows)
    import numpy as np

    from .stream import RowWriter

    with RowWriter(args.out, n, () if width == 1 else (width,), header + per_feature) as out, \
            progress_bar(n, "score") as bar:  # fmt: skip
        for x in chunks:
            scores = run.score(x)
            columns = [scores]
            if threshold is not None:
                above = scores > threshold
                flagged += int(above.sum())
                columns.append(above.astype(np.float64))
            columns += [run.feature_errors(x)] if per_feature else []
            out.write(scores if width == 1 else np.column_stack(columns))
            kept.append(scores[:: max(1, n // 1_000_000)].copy())  # a copy: a view would hold every chunk's scores
            bar.update(len(x))
    sample = np.concatenate(kept) if kept else np.zeros(1)
    print(f"wrote {n} anomaly scores to {args.out} (median {float(np.median(sample)):.4g}, "
          f"max {float(sample.max()):.4g})" + ("" if threshold is None else
          f"; {flagged} above the threshold {threshold:.4g} marked outlier=1") +
          ("; per-feature errors in columns e0..e" + str(run.width - 1) if per_feature else ""))  # fmt: skip
    return 0


def cmd_plot(args) -> int:
    folder = args.out or args.run / "figures"
    runs().load_run(args.run).draw(args.kind, folder)
    print(f"wrote {folder / args.kind}.png and .svg")
    return 0


def cmd_export(args) -> int:
    if args.out.suffix.lower() != ".onnx":
        raise AekitError(f"--out {args.out}: an ONNX file must end in .onnx")
    if args.out.is_dir():
        raise AekitError(f"--out {args.out} is a folder; give a file name ending in .onnx")
    runs().load_run(args.run).export(args.out, args.part)
    what = "z" if args.part == "decoder" else "raw x"
    print(f"wrote {args.out}: the {args.part} of {args.run} as ONNX, input {what} with a dynamic batch axis")
    return 0


def cmd_serve(args) -> int:
    try:
        from .serve import serve
    except ImportError:  # fastapi, pydantic or uvicorn missing
        raise AekitError("aekit serve needs the 'serve' extra: pip install 'aekit[serve]'") from None

    serve(args.run, host=args.host, port=args.port, device=args.device, tsne=args.tsne)
    return 0


def cmd_fit_score(args) -> int:
    run = runs().load_run(args.run)
    spec = run.fit_score(args.error_blur, args.latent_distance, args.code_neighbors)
    stats = "" if spec.stats is None else (" (training rows: error {:.4g} +- {:.3g}, code distance {:.4g} +- {:.3g})"
                                           .format(*spec.stats.tolist()))  # fmt: skip
    print(f"stored the anomaly score in {args.run}/score.safetensors: {spec.describe()}{stats}")
    return 0


def cmd_report(args) -> int:
    print(f"report written: {report().write_report(args.run)}")  # loading the run first names a bad RUN
    return 0


def cmd_error_vs_dim(args) -> int:
    result = runs().sweep_error_vs_dim(args.run, args.dims, args.epochs, progress=progress_wanted(args))
    print(f"{'k':>4}{'autoencoder':>14}{'PCA':>10}   (test SSE per image, {result['epochs']} epochs each)")
    for k, a, p in zip(result["dims"], result["autoencoder"], result["pca"]):
        print(f"{k:>4}{a:>14.3f}{p:>10.3f}")
    print(f"figure written: {args.run / 'figures' / 'error-vs-dim.png'}")
    return 0


def demo_steps(args) -> list[list[str]]:
    """The three commands ``aekit demo`` runs, as argument lists."""
    out, given = str(args.out), lambda name, value: [flag(name), str(value)] if value is not None else []
    progress = [] if args.progress is None else ["--progress" if args.progress else "--no-progress"]
    train = ["train", "--preset", "chapter", "--out", out, "--epochs", str(args.epochs), *given("limit", args.limit),
             *given("device", args.device), *(["--overwrite"] if args.overwrite else []), *progress]  # fmt: skip
    sweep = ["error-vs-dim", out, "--epochs", str(args.sweep_epochs), "--dims", ",".join(map(str, args.dims)),
             *progress]  # fmt: skip
    return [train, sweep, ["report", out]]


def cmd_demo(args) -> int:
    """The three commands in this process, each announced as it could be typed."""
    if runs().holds_run(args.out) and not args.overwrite:  # train's own message would suggest --resume
        raise AekitError(f"{args.out} already holds a run; pass --overwrite to replace it")
    parser, steps = build_parser(), demo_steps(args)
    for number, step in enumerate(steps, 1):
        print(f"[{number}/{len(steps)}] aekit {shlex.join(step)}", flush=True)
        parsed = parser.parse_args(step)
        COMMANDS[parsed.command](parsed)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "encode": cmd_encode_or_reconstruct, "impute": cmd_impute,
            "reconstruct": cmd_encode_or_reconstruct, "datasets": cmd_datasets, "plot": cmd_plot, "score": cmd_score,
            "report": cmd_report, "error-vs-dim": cmd_error_vs_dim, "serve": cmd_serve,
            "export": cmd_export, "demo": cmd_demo, "fit-score": cmd_fit_score,
            "fit-prior": cmd_fit_prior, "sample": cmd_sample, "compress": cmd_compress,
            "decompress": cmd_decompress, "features": cmd_features}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = int(os.environ.get("RANK", "0")) > 0  # under torchrun, rank 0 speaks for all
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    debug = args.debug or os.environ.get("AEKIT_DEBUG", "") not in ("", "0")
    from .train import Interrupted  # (torch: only once the arguments were good)

    try:
        return COMMANDS[args.command](args)
    except Interrupted as err:  # Ctrl-C or SIGTERM, after the checkpoint was saved: 128 + the signal, as a shell says
        print(f"aekit {args.command}: {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print(f"aekit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (AekitError, OSError) as err:  # bad input, or what the operating system said about a path
        if debug:
            raise
        print(f"aekit {args.command}: error: {expected_error(err)}", file=sys.stderr)
        return 2


def expected_error(err: BaseException) -> str:
    """One line for an expected failure: aekit's own message, or the path and the operating system's reason."""
    if isinstance(err, OSError) and not isinstance(err, AekitError) and err.strerror:
        where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
        return f"{where}: {err.strerror}" if where else err.strerror
    return " ".join(str(err).split())  # one line, whatever the message held
