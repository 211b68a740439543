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

import numpy as np
from tqdm.auto import tqdm

from . import __version__, data, evaluate, files, plots, report, runs, stream
from .checkpoint import RunDir
from .errors import AekitError
from .models import BODIES, LOSSES, OBJECTIVES, PRESETS, SHORTCUTS, make_config, option_owners, part_options
from .train import DEVICES, SCHEDULES, Interrupted, TrainConfig, squared_errors

log = logging.getLogger("aekit")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must list positive integers")
    return values


def image_size(text: str) -> tuple[int, int]:
    values = int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} must be HxW, e.g. 28x28")
    return values


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
    t = TrainConfig()

    train = commands.add_parser(
        "train", help="train an autoencoder into a run directory",
        description="Train an autoencoder and evaluate it beside PCA with the same number of components. "
        "Writes config.json, model.safetensors, checkpoint.safetensors (for --resume), history.csv and "
        "metrics.json into --out. Defaults are the chapter's: Adam, lr 1e-3, batch 128, 10 epochs, MSE.",
    )  # fmt: skip
    g = train.add_argument_group("data")
    g.add_argument("--data", default="mnist", metavar="NAME|PATH",
                   help=f"a dataset ({', '.join(sorted(data.DATASETS))}), a .npy/.npz/.csv/.parquet file, a folder "
                   "of .npy shards or of images (default: mnist); a .npy, Parquet, shard or image folder source over "
                   "2 GiB as float32 is streamed from disk")  # fmt: skip
    g.add_argument("--data-dir", help="folder searched first for the MNIST files (then $AEKIT_DATA, the bundled "
                   "copy, the user cache)")
    g.add_argument("--test-fraction", type=positive_float, default=0.2,
                   help="share held out for testing when the data has no test split (default: 0.2)")
    g.add_argument("--label-column", help="CSV column holding labels (name or 0-based index)")
    g.add_argument("--image-size", type=image_size, metavar="HxW", help="resize a folder's images to HxW")
    g.add_argument("--limit", type=positive_int, metavar="N", help="train on the first N examples only")
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
    g = train.add_argument_group("training")
    g.add_argument("--loss", choices=LOSSES, help=f"reconstruction loss (default: {t.loss})")
    g.add_argument("--lr", type=positive_float, help=f"Adam learning rate (default: {t.lr:g})")
    g.add_argument("--batch-size", type=positive_int, help=f"default: {t.batch_size}")
    g.add_argument("--epochs", type=positive_int, help=f"default: {t.epochs}; with --resume, train to this many")
    g.add_argument("--weight-decay", type=float, help="Adam's L2 penalty (default: 0)")
    g.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (default: none)")
    g.add_argument("--clip-grad", type=positive_float, metavar="NORM", help="clip the gradient norm")
    g.add_argument("--n-iter-no-change", type=positive_int, metavar="N", help="stop after N epochs in which the test "
                   "MSE per feature improved by less than --tol (default: train all epochs)")
    g.add_argument("--tol", type=float, metavar="X", help=f"the improvement that counts for --n-iter-no-change "
                   f"(default: {t.tol:g})")
    g.add_argument("--eval-every", type=positive_int, metavar="K", help="compute the test error after every K "
                   "epochs and after the last (default: 1, every epoch; the other epochs' history rows have no test "
                   "columns)")  # fmt: skip
    g.add_argument("--seed", type=int, help=f"seeds weights, batch order and noise (default: {t.seed})")
    add_device_flag(g)
    g = train.add_argument_group("run directory")
    g.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory (default: runs/latest)")
    g.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    add_progress_flag(g)

    ev = commands.add_parser("evaluate", help="test metrics of a run beside PCA at the same code size",
                             description="Evaluate RUN on its test split: MSE per pixel, SSE per image "
                             "(Hinton & Salakhutdinov 2006's unit), BCE per pixel and PSNR, beside PCA fitted on "
                             "the same training data with as many components as the code. Writes metrics.json.")
    ev.add_argument("run", type=Path, metavar="RUN")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument("--device", choices=DEVICES, default="auto")

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
        ("score", "write one anomaly score (reconstruction error) per row",
         f"Score each example of INPUT by RUN's reconstruction error: the mean squared error over its features, in "
         f"the units the model was trained in (standardized for tables, [0, 1] for images). Higher is more "
         f"abnormal. {inputs} Writes a CSV (header 'score', and 'outlier' with --contamination or --threshold), a "
         f".npy array or a Parquet table, by the output's suffix.",
         "FILE.csv|FILE.npy|FILE.parquet"),
    ):  # fmt: skip
        p = commands.add_parser(name, help=help_text, description=description)
        p.add_argument("run", type=Path, metavar="RUN")
        p.add_argument("--input", required=True, metavar="NAME|PATH")
        p.add_argument("--split", choices=("test", "train"), default="test", help="split of a named dataset")
        p.add_argument("--out", required=True, type=Path, metavar=out)
        p.add_argument("--device", choices=DEVICES, default="auto")
        if name == "score":
            label = p.add_mutually_exclusive_group()
            label.add_argument("--contamination", type=positive_float, metavar="C", help="add an 'outlier' column "
                               "(1 or 0): 1 above the (1 - C) quantile of the scores of RUN's own training data")
            label.add_argument("--threshold", type=float, metavar="T", help="add an 'outlier' column: 1 for scores "
                               "above T")

    p = commands.add_parser("plot", help="draw one of the chapter's figures for a run",
                            description="Draw a figure for RUN as PNG and SVG (default folder: RUN/figures). "
                            "reconstructions: test images, AE and PCA reconstructions with SSE per image; samples: "
                            "decoded z ~ N(0, I) beside z from a Gaussian fitted to the codes; latent: t-SNE and "
                            "PCA of 1000 test codes by label; interpolation: decoding between two codes; curves: "
                            "loss per epoch; denoising: noisy, denoised and clean test images (denoising objective); "
                            "codebook: how often each codebook vector is used (vq objective). "
                            "For error against code size see 'aekit error-vs-dim'.")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("kind", choices=plots.KINDS, metavar="KIND", help=", ".join(plots.KINDS))
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

    p = commands.add_parser("serve", help="explore RUN's latent space in the browser and serve it over HTTP",
                            description="Start a local web app for RUN: a page to explore its latent space (map of "
                            "the test codes, sliders, drawing, interpolation, samples) and a JSON API (POST "
                            "/v1/encode, /v1/decode, /v1/reconstruct, /v1/score; GET /v1/info, /healthz; OpenAPI "
                            "page at /docs). Needs the 'serve' extra (pip install 'aekit[serve]').")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only; "
                   "another address makes the server reachable from the network: your explicit choice)")
    p.add_argument("--port", type=positive_int, default=8000, help="default: 8000")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the model runs (default: cpu)")
    p.add_argument("--tsne", action="store_true", help="also compute a t-SNE map of the codes at start (seconds)")

    p = commands.add_parser("export", help="write the model (or its encoder, decoder or score) as ONNX",
                            description="Write one part of RUN's model as an ONNX graph with a dynamic batch axis, "
                            "taking raw inputs (a standardized run's scaling is folded in): encoder x -> z (a VAE's "
                            "posterior mean), decoder z -> x_hat, autoencoder x -> x_hat, score x -> the mean squared "
                            "reconstruction error per feature, as 'aekit score' writes it. Needs the 'onnx' extra "
                            "(pip install 'aekit[onnx]').")  # fmt: skip
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--part", choices=("encoder", "decoder", "autoencoder", "score"), default="autoencoder",
                   help="which graph (default: autoencoder)")

    commands.add_parser("datasets", help="list the built-in datasets and the file formats accepted",
                        description="List the built-in datasets, where MNIST is found, and the accepted files.")
    return parser


def cmd_train(args) -> int:
    preset = PRESETS[args.preset]
    if args.resume is not None:
        refuse_settings_on_resume(args)
    options = {name: getattr(args, name) for name in part_options() if getattr(args, name) is not None}
    if args.latent_dim is not None:
        options["latent_dim"] = args.latent_dim
    model_config = make_config(args.model, body=args.body, objective=args.objective, base=preset["model"],
                               spell=flag, **options)  # fmt: skip
    data_config = data.DataConfig(name=args.data, data_dir=args.data_dir, test_fraction=args.test_fraction,
                                  label_column=args.label_column, image_size=args.image_size, limit=args.limit)
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    train_config = TrainConfig(**{**preset.get("train", {}), **given})  # explicit options beat the preset
    out = args.resume or args.out
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    history, metrics = runs.train_run(
        out, model_config, data_config, train_config, resume=args.resume is not None, overwrite=args.overwrite,
        progress=progress, epochs=args.epochs if args.resume else None,
        device=args.device if args.resume else None,
    )
    if metrics:  # under torchrun, only rank 0 evaluates and reports
        print(evaluate.format_metrics(metrics))
        print(f"run saved in {out}/ (config.json, model.safetensors, history.csv, metrics.json)")
    return 0


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


RESUME_MAY_CHANGE = {"resume", "epochs", "device", "progress", "command", "out", "overwrite", "preset", "debug"}


def refuse_settings_on_resume(args) -> None:
    """--resume continues with the run's stored settings; any other setting given with it would be dropped."""
    defaults = vars(build_parser().parse_args(["train"]))
    given = [flag(dest) for dest, value in vars(args).items() if dest not in RESUME_MAY_CHANGE and value != defaults[dest]]
    if given:
        raise AekitError(f"--resume continues {args.resume} with its stored settings; only --epochs and --device may "
                         f"change (drop {', '.join(given)})")  # fmt: skip


def cmd_evaluate(args) -> int:
    metrics = runs.evaluate_run(args.run, args.device)
    print(json.dumps(metrics, indent=2) if args.json else evaluate.format_metrics(metrics))
    return 0


INFER_CHUNK_ROWS = 8192  # rows per chunk when the input was loaded whole (a dataset name, CSV, images)


def input_chunks(run: runs.Run, source: str, split: str):
    """``(n_rows, chunks)``: the input in model space, chunk by chunk. A ``.npy`` file, a folder of ``.npy``
    shards or of images, or a Parquet file is read a chunk at a time (memory stays bounded whatever its size);
    any other input is loaded whole, then cut into chunks."""
    if source not in data.DATASETS and stream.streamable(source):
        rows = stream.open_rows(source, run.data_config.label_column, image_size=run.data_config.image_size)
        shape = run.model_config.input_shape
        stream.keep_heap_small()  # memory bounded by a chunk, however many chunks pass

        def chunks():  # a chunk (a Parquet row group may be large) is scaled to float32 a slice at a time
            for raw, _ in rows.chunks():
                for i in range(0, len(raw), INFER_CHUNK_ROWS):
                    yield data.to_model_space(raw[i : i + INFER_CHUNK_ROWS], shape, run.scaling, run.scaler, source)

        return len(rows), chunks()
    x, _ = run.inputs(source, split)
    return len(x), (x[i : i + INFER_CHUNK_ROWS] for i in range(0, len(x), INFER_CHUNK_ROWS))


def progress_bar(total: int, what: str):
    return tqdm(total=total, unit="row", desc=what, disable=not sys.stderr.isatty(), leave=False, dynamic_ncols=True)


def cmd_encode_or_reconstruct(args) -> int:
    check_output_path(args.out)
    run = runs.load_run(args.run, args.device)
    n, chunks = input_chunks(run, args.input, args.split)
    encode = args.command == "encode"
    shape = (run.model_config.latent_dim,) if encode else run.model_config.input_shape
    with stream.RowWriter(args.out, n, shape) as out, progress_bar(n, args.command) as bar:
        for x in chunks:
            result = evaluate.encode(run.model, x) if encode else run.to_data_space(evaluate.reconstruct(run.model, x))
            out.write(result.numpy())
            bar.update(len(x))
    what = "codes" if encode else "reconstructions"
    print(f"wrote {what} of shape {(n, *shape)} to {args.out}")
    return 0


def check_output_path(out: Path) -> None:
    """Refuse an output whose suffix aekit does not write, or that is a folder, before any work is done."""
    if out.suffix.lower() not in files.OUTPUT_SUFFIXES:
        raise AekitError(f"--out {out}: unsupported output type {out.suffix or '(none)'!r}; use "
                         f"{' or '.join(files.OUTPUT_SUFFIXES)}")  # fmt: skip
    if out.is_dir():
        raise AekitError(f"--out {out}: is a folder; give a file name")


def cmd_datasets(args) -> int:
    for name, (_, help_text) in sorted(data.DATASETS.items()):
        print(f"{name:<8} {help_text}")
    try:
        print(f"\nMNIST found in {data.find_mnist(download=False)}")
    except AekitError as err:
        print(f"\nMNIST: {err}")
    print("search order: --data-dir, $AEKIT_DATA, the bundled copy, the user cache; then a checked download")
    print("\nyour own data (--data PATH): .npy or .npz arrays (N, D) or (N, C, H, W); a numeric .csv table "
          "(header optional, --label-column); a .parquet table (numeric columns, --label-column; the 'parquet' "
          "extra); a folder of .npy shards (one table); a folder of .png/.jpg images (one subfolder per class gives "
          "labels). A .npy, Parquet, shard or image folder source over 2 GiB (as float32) is streamed from disk in "
          "chunks.")
    return 0


def cmd_score(args) -> int:
    check_output_path(args.out)
    if args.contamination is not None and not args.contamination < 1:
        raise AekitError(f"--contamination {args.contamination:g} must be a share below 1, e.g. 0.05")
    run = runs.load_run(args.run, args.device)
    threshold = args.threshold
    if args.contamination is not None:  # the threshold that flags that share of the run's own training data
        train = run.data().x_train
        threshold = float(np.quantile((squared_errors(run.model, train) / train[0].numel()).numpy(),
                                      1 - args.contamination))  # fmt: skip
    n, chunks = input_chunks(run, args.input, args.split)
    header = ["score"] if threshold is None else ["score", "outlier"]
    kept, flagged = [], 0  # a sample of the scores for the summary line (all of them up to 1e6 rows)
    with stream.RowWriter(args.out, n, () if threshold is None else (2,), header) as out, \
            progress_bar(n, "score") as bar:  # fmt: skip
        for x in chunks:
            scores = (squared_errors(run.model, x) / x[0].numel()).numpy()
            if threshold is None:
                out.write(scores)
            else:
                above = scores > threshold
                flagged += int(above.sum())
                out.write(np.stack([scores, above.astype(np.float64)], axis=1))
            kept.append(scores[:: max(1, n // 1_000_000)].copy())  # a copy: a view would hold every chunk's scores
            bar.update(len(x))
    sample = np.concatenate(kept) if kept else np.zeros(1)
    print(f"wrote {n} anomaly scores to {args.out} (median {float(np.median(sample)):.4g}, "
          f"max {float(sample.max()):.4g})" + ("" if threshold is None else
          f"; {flagged} above the threshold {threshold:.4g} marked outlier=1"))  # fmt: skip
    return 0


def cmd_plot(args) -> int:
    run = runs.load_run(args.run)
    folder = args.out or args.run / "figures"
    rundir = RunDir(args.run)
    plots.draw(args.kind, run.model, run.data() if args.kind != "curves" else None, rundir.read_history(),
               rundir.read_metrics(), path=folder / args.kind)  # fmt: skip
    print(f"wrote {folder / args.kind}.png and .svg")
    return 0


def cmd_export(args) -> int:
    from .export import export_onnx

    if args.out.suffix.lower() != ".onnx":
        raise AekitError(f"--out {args.out}: an ONNX file must end in .onnx")
    if args.out.is_dir():
        raise AekitError(f"--out {args.out} is a folder; give a file name ending in .onnx")
    run = runs.load_run(args.run)
    export_onnx(run.model, run.scaler, args.out, args.part)
    what = "z" if args.part == "decoder" else "raw x"
    print(f"wrote {args.out}: the {args.part} of {args.run} as ONNX, input {what} with a dynamic batch axis")
    return 0


def cmd_serve(args) -> int:
    from .serve import serve

    serve(args.run, host=args.host, port=args.port, device=args.device, tsne=args.tsne)
    return 0


def cmd_report(args) -> int:
    print(f"report written: {report.write_report(args.run)}")  # loading the run first names a bad RUN
    return 0


def cmd_error_vs_dim(args) -> int:
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = runs.sweep_error_vs_dim(args.run, args.dims, args.epochs, progress=progress)
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
    if RunDir(args.out).holds_run() and not args.overwrite:  # train's own message would suggest --resume
        raise AekitError(f"{args.out} already holds a run; pass --overwrite to replace it")
    parser, steps = build_parser(), demo_steps(args)
    for number, step in enumerate(steps, 1):
        print(f"[{number}/{len(steps)}] aekit {shlex.join(step)}", flush=True)
        parsed = parser.parse_args(step)
        COMMANDS[parsed.command](parsed)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "encode": cmd_encode_or_reconstruct,
            "reconstruct": cmd_encode_or_reconstruct, "datasets": cmd_datasets, "plot": cmd_plot, "score": cmd_score,
            "report": cmd_report, "error-vs-dim": cmd_error_vs_dim, "serve": cmd_serve,
            "export": cmd_export, "demo": cmd_demo}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = int(os.environ.get("RANK", "0")) > 0  # under torchrun, rank 0 speaks for all
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    debug = args.debug or os.environ.get("AEKIT_DEBUG", "") not in ("", "0")
    try:
        return COMMANDS[args.command](args)
    except Interrupted as err:
        print(f"aekit {args.command}: {err}", file=sys.stderr)
        return 130
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
