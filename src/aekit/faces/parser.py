"""The ``aekit`` command line's parser: every command and flag, the model parts' and configs' flags made from their
``option()`` fields. Nothing here loads torch, scikit-learn or matplotlib: ``aekit --help``, ``aekit COMMAND --help``
and a mistyped flag answer at once."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from .._version import __version__
from ..configs import DEVICES, DataConfig, TrainConfig
from ..generation.parts import PRIORS, prior_names, prior_options
from ..model.config import BODIES, OBJECTIVES, PRESETS, SHORTCUTS, part_options
from ..model.parts import Body
from ..options import int_list, positive_float, positive_int

RUN_HELP = "a run directory, or pretrained:NAME for a trained run that ships with aekit (aekit pretrained lists them)"
OUTPUT_SUFFIXES = (".npy", ".csv", ".parquet")  # aekit.io.files.OUTPUT_SUFFIXES (a test keeps the two alike)
FIGURES = ("reconstructions", "samples", "latent", "interpolation", "anomalies", "curves", "denoising", "codebook",
           "features")  # aekit.analysis.plots.KINDS: the figures `aekit plot` draws (a test keeps the two alike)


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
        if base is bool:  # a switch: given or not (None: not given, the field's default)
            group.add_argument(meta["flag"] or flag(f.name), dest=config_dest(f), action="store_const", const=True,
                               help=meta["help"])  # fmt: skip
            continue
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


INPUTS_HELP = ("INPUT is a dataset name (its --split), a .npy/.npz/.csv/.parquet file, a folder of .npy shards or an "
               "image folder, shaped like the training data; .npy, shards, Parquet and image folders are read a chunk "
               "at a time.")
SERIES_INPUT = "A series run (train --series) takes a long series and writes "  # encode's and reconstruct's help


def add_inference_parsers(commands) -> None:
    ev = commands.add_parser("evaluate", help="test metrics of a run beside PCA at the same code size",
                             description="Evaluate RUN on its test split: MSE per pixel, SSE per image "
                             "(Hinton & Salakhutdinov 2006's unit), BCE per pixel and PSNR, beside PCA fitted on "
                             "the same training data with as many components as the code. Writes metrics.json.")
    ev.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument("--analysis", action=argparse.BooleanOptionalAction, default=True, help="also the holes measure, "
                    "the probes and each fitted prior's sample quality (default: on; --no-analysis: the errors beside "
                    "PCA only)")
    ev.add_argument("--device", choices=DEVICES, default="auto", help="where the model runs (default: auto = cuda, "
                    "then mps, then cpu)")

    inputs = INPUTS_HELP
    for name, help_text, description, out in (
        ("encode", "write the codes (N, latent_dim) of a dataset or file",
         f"Write the codes of INPUT through RUN's encoder. {inputs} The output's suffix picks .npy, .csv or .parquet; "
         f"it is written as it is computed. {SERIES_INPUT}the code of the window starting at each step.",
         "FILE.npy|FILE.csv|FILE.parquet"),
        ("reconstruct", "write the reconstructions of a dataset or file, in the data's units",
         f"Write the reconstructions of INPUT, in the data's original units. {inputs} The output's suffix picks "
         f".npy, .csv or .parquet (written as it is computed), or, for images, a .png grid. {SERIES_INPUT}it rebuilt, "
         "each step the mean of the windows covering it, in the input's channels.",
         "FILE.npy|FILE.csv|FILE.parquet|FILE.png"),
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
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
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
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
    p.add_argument("kind", choices=FIGURES, metavar="KIND", help=", ".join(FIGURES))
    p.add_argument("--out", type=Path, metavar="DIR", help="folder for the figure (default: RUN/figures)")

    p = commands.add_parser("report", help="write RUN/report.html: metrics beside PCA and every figure",
                            description="Draw every figure for RUN and write one self-contained HTML report "
                            "(figures embedded) with the config, the metrics beside PCA and the chapter's claims "
                            "in numbers.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
    p.add_argument("--out", type=Path, metavar="FILE.html", help="where the report goes (default: RUN/report.html, "
                   "its figures in RUN/figures; with --out they are drawn in a temporary folder and embedded)")

    p = commands.add_parser("error-vs-dim", help="test error against code size, AE beside PCA (trains models)",
                            description="Train RUN's model at each code size (into RUN/sweep/k<d>; finished ones "
                            "are reused) and draw test SSE per image against code size beside PCA's, into "
                            "RUN/figures/error-vs-dim.png; the report picks it up. RUN's own code size is not "
                            "trained again when RUN's first --epochs epochs are that training (same settings, "
                            "schedule none, tested after that epoch): its test error then is RUN's.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
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
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only; "
                   "another address makes the server reachable from the network: your explicit choice)")
    p.add_argument("--port", type=positive_int, default=8000, help="default: 8000")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the model runs (default: cpu)")
    p.add_argument("--tsne", action="store_true", help="also compute a t-SNE map of the codes at start (seconds)")

    p = commands.add_parser("export", help="write the model (or its encoder, decoder or score) as ONNX",
                            description="Write one part of RUN's model as an ONNX graph with a dynamic batch axis, "
                            "taking raw inputs (a standardized run's scaling is folded in): encoder x -> z (a VAE's "
                            "posterior mean), decoder z -> x_hat, autoencoder x -> x_hat, score x -> the anomaly score "
                            "as 'aekit score' writes it (with the run's latent-distance score if it has one; a series run's: a series "
                            "(T, C) -> one score per step). Needs the 'onnx' extra "
                            "(pip install 'aekit[onnx]').")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
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
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
    p.add_argument("--error-blur", type=positive_int, default=1, metavar="W",
                   help="average the residual over a WxW window before squaring (odd; images; default: 1, none)")
    p.add_argument("--code-neighbors", type=int, default=0, metavar="K",
                   help="the code's distance is its mean distance to the K nearest training codes (default: 0, the "
                   "Gaussian's Mahalanobis distance)")
    p.add_argument("--latent-distance", action=argparse.BooleanOptionalAction, default=True,
                   help="add the code's distance to the reconstruction error (default: on; --no-latent-distance "
                   "keeps the error alone, blurred with --error-blur)")

    commands.add_parser("datasets", help="list the built-in datasets and the file formats accepted",
                        description="List the built-in datasets, where MNIST is found, the accepted files, and the "
                        "trained runs that ship with aekit.")  # fmt: skip
    p = commands.add_parser("pretrained", help="list the trained runs that ship with aekit, or copy one",
                            description="The trained runs that ship with aekit (the codec, the chapter model, "
                            "conv30), each checked against its manifest's SHA-256 when used. Any command that takes "
                            "a RUN takes pretrained:NAME (aekit compress pretrained:codec ..., aekit serve "
                            "pretrained:chapter). They are read-only: --out copies one into a run of your own to "
                            "train further or fit priors into. Without NAME: list them, with the command that "
                            "trained each and its metrics.")  # fmt: skip
    p.add_argument("name", nargs="?", metavar="NAME", help="one of them: its folder, commands and metrics")
    p.add_argument("--out", type=Path, metavar="DIR", help="copy NAME into DIR (a new folder)")


def add_generation_parsers(commands) -> None:
    fitted = [name for name in prior_names() if name != "normal"]
    kinds = "; ".join(f"{kind}: {cls.help}" for kind, cls in PRIORS.items())
    p = commands.add_parser("fit-prior", help="fit a latent prior to RUN's training codes, to sample from it",
                            description="Fit a distribution to the codes of RUN's training rows and store it in "
                            "RUN/priors/ (JSON + safetensors; no other file of the run changes). Decoding z drawn "
                            f"from it gives new examples (aekit sample). {kinds}. With --conditional the prior is "
                            "fitted per label, so samples of one class can be asked for (--label). 'normal' (N(0, I)) "
                            "needs no fitting. aekit evaluate then measures every prior's samples beside the floor. "
                            "Each prior's own options are flags below; giving one to a prior without it is an "
                            "error.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
    p.add_argument("--prior", required=True, choices=fitted, help="which prior to fit")
    p.add_argument("--conditional", action="store_true", help="one prior per label of the training data")
    p.add_argument("--seed", type=int, default=0, help="seeds the fit (default: 0)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the model encodes (default: cpu)")
    add_progress_flag(p)
    add_owned_options(p.add_argument_group("the priors' options"), prior_options(), lambda cls: f"{cls.kind}")

    p = commands.add_parser("sample", help="decode codes drawn from a prior: new examples",
                            description="Draw N codes from one of RUN's priors and decode them. A .png gets a grid of "
                            "the images; a .npy an (N, *input_shape) float32 array (images: (N, C, H, W)) in the data's "
                            "own units (pixels in [0, 1]); .csv and .parquet flat rows, or a table run's own columns. "
                            "Every command takes these files back as input. The same --seed gives the same "
                            "file. 'normal' is N(0, I) (the chapter's holes, for a plain autoencoder); the others are "
                            "fitted first with aekit fit-prior.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
    p.add_argument("--prior", choices=prior_names(), default="normal", help="default: normal")
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
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
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
    p.add_argument("run", type=Path, metavar="RUN", help=RUN_HELP)
    p.add_argument("--out", required=True, type=Path, metavar="FILE.npy|FILE.csv|FILE.parquet",
                   help="where the directions go: (L, *input_shape) in a .npy, or L flat rows in a table")


def progress_wanted(args) -> bool | None:
    """``--progress`` / ``--no-progress``, or None: bars where the output is a terminal (:mod:`aekit.progress`)."""
    return args.progress


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_part_options(group) -> None:
    """One flag per body/objective option (:func:`add_owned_options`)."""
    kind = lambda cls: f"{cls.kind} {'body' if issubclass(cls, Body) else 'objective'}"  # noqa: E731
    add_owned_options(group, part_options(), kind)


def add_owned_options(group, owned: dict[str, list[type]], owner: Callable[[type], str]) -> None:
    """One flag per option of a registry's classes (``owned``: name -> the classes that have it), its type, choices,
    help and default read from the dataclass field, and ``owner(cls)`` naming each class that has it. Its default is
    None ("not given"): the class's own default applies."""
    for name, owners in owned.items():
        spec = next(f for f in fields(owners[0]) if f.name == name)
        hint = typing.get_type_hints(owners[0])[name]
        defaults = dict.fromkeys(_shown(next(f for f in fields(p) if f.name == name).default) for p in owners)
        convert = spec.metadata["parse"] or {int: int, float: float, str: str}.get(hint, int_list)
        metavar = spec.metadata["metavar"] or (None if spec.metadata["choices"] else
                                               {int: "N", float: "X", str: "NAME"}.get(hint, "N,N"))  # fmt: skip
        where = " and ".join(owner(cls) for cls in owners)
        group.add_argument(flag(name), type=convert, choices=spec.metadata["choices"], metavar=metavar,
                           help=f"{spec.metadata['help']} ({where}; default: {' / '.join(defaults)})")  # fmt: skip


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)
