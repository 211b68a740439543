"""The ``aekit`` command: parse, build configs, call one function. Bad input is one line and exit code 2."""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import socket
import sys
from pathlib import Path

from ..configs import DataConfig, TrainConfig
from ..errors import AekitError
from ..generation.parts import prior_options
from ..model.config import PRESETS, make_config, part_options
from ..run import pretrained
from .parser import OUTPUT_SUFFIXES, build_parser, config_from_args, flag, progress_wanted


# Nothing above loads torch, scikit-learn or matplotlib: `aekit --help`, `aekit COMMAND --help` and a mistyped flag
# answer at once. A command loads the run layer when it runs (:func:`runs`, :func:`report`).
def runs():
    """The run handle's module (:mod:`aekit.run.runs`: ``load_run``, ``evaluate_run``), imported when a command
    needs it; :func:`outputs`, :func:`training` and :func:`sweep` are the run layer's other modules, alike."""
    from ..run import runs as module

    return module


def outputs():
    """:mod:`aekit.run.outputs`: what commands write and read beside a run."""
    from ..run import outputs as module

    return module


def training():
    """:mod:`aekit.run.training`: ``train_run``."""
    from ..run import training as module

    return module


def sweep():
    """:mod:`aekit.run.sweep`: ``sweep_error_vs_dim``."""
    from ..run import sweep as module

    return module


def report():
    """:mod:`aekit.report`, imported when a command needs it."""
    from . import report as module

    return module

log = logging.getLogger("aekit")


def cmd_features(args) -> int:
    check_output_path(args.out)
    run = runs().load_run(args.run)
    features = run.analysis.features()
    outputs().write_rows(features["directions"], args.out)
    firing = features["firing"]
    print(f"wrote {len(firing)} feature directions {features['directions'].shape} to {args.out}; on the test rows "
          f"{int((firing == 0).sum())} never fire, the others fire on {float(firing[firing > 0].min(initial=0)):.2%} to "
          f"{float(firing.max()):.2%} of rows")  # fmt: skip
    return 0


def cmd_compress(args) -> int:
    if args.out.is_dir():
        raise AekitError(f"--out {args.out}: is a folder; give a file name")
    if args.out.suffix.lower() in (*OUTPUT_SUFFIXES, ".npz", ".png", ".jpg", ".json"):
        raise AekitError(f"--out {args.out}: a compressed file is aekit's own container, not a {args.out.suffix} "
                         "file; name it FILE.aek")  # fmt: skip
    run = runs().load_run(args.run, args.device)
    import torch

    codec = run.codec  # a run that is not a codec: said before the input is read
    _, chunks = run.chunks(args.input, args.split)
    x = torch.cat(list(chunks))
    payload = codec.compress(x, per_item=args.per_item)
    summary = codec.summary(x, payload)
    outputs().write_bytes(args.out, payload)
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
    x = run.codec.decompress(outputs().read_bytes(args.file), str(args.file))
    if suffix == "":
        if not run.space.is_image:
            raise AekitError(f"--out {args.out}: a folder of PNGs needs image data; write a .npy")
        outputs().write_image_folder(x, args.out)
    else:
        check_grid_fits(args.out, run)
        outputs().write_rows(x, args.out)
    print(f"wrote {len(x)} rows decoded from {args.file} to {args.out}")
    return 0


def cmd_fit_prior(args) -> int:
    run = runs().load_run(args.run, args.device)
    options = {name: getattr(args, name) for name in prior_options()}  # None: not given, the prior's default
    prior = run.priors.fit(args.prior, args.conditional, args.seed, progress_wanted(args), **options)
    quality = run.priors.quality(args.prior)
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
    x = run.priors.sample(args.n, args.prior, args.label, args.seed, args.guidance)
    outputs().write_rows(x, args.out, run.model_config.columns)
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
    if args.series:  # windows (C, W): the data gives the numbers, a sequence body checks that it is one
        options["input_shape"] = (1, args.window or 100)
    model_config = make_config(args.model, body=args.body, objective=args.objective, base=preset["model"],
                               spell=flag, **options)  # fmt: skip
    train_config = config_from_args(TrainConfig, args, preset.get("train", {}))  # explicit options beat the preset
    out = args.resume or args.out
    chapter = args.preset == "chapter"  # the default: what a preset does not fix is left to the data
    from_data = tuple(name for name, given, free in (("latent_dim", args.latent_dim, chapter),
                                                     ("hidden", args.hidden, chapter and args.body in (None, "mlp")),
                                                     ("epochs", args.epochs, "train" not in preset))
                      if given is None and free and args.model in (None, "mlp"))  # fmt: skip
    history, metrics = training().train_run(
        out, model_config, config_from_args(DataConfig, args), train_config, resume=args.resume is not None,
        overwrite=args.overwrite, progress=progress_wanted(args), epochs=args.epochs if args.resume else None,
        device=args.device if args.resume else None, tensorboard=args.tensorboard, analysis=args.analysis,
        latent_distance=args.latent_distance, from_data=from_data,
    )  # fmt: skip
    if metrics:  # under torchrun, only rank 0 evaluates and reports
        print(report().format_metrics(metrics))
        print(f"run saved in {out}/ (config.json, model.safetensors, history.csv, metrics.json)")
    return 0


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
    from ..progress import bar

    return bar(total=total, unit="row", desc=what, leave=False)


def check_grid_or_rows_output(out: Path) -> None:
    """An output of rows (:func:`check_output_path`) or a ``.png`` grid of images, checked before any work."""
    if out.suffix.lower() not in (*OUTPUT_SUFFIXES, ".png"):
        raise AekitError(f"--out {out}: unsupported output type {out.suffix or '(none)'!r}; use "
                         f"{' or '.join((*OUTPUT_SUFFIXES, '.png'))}")  # fmt: skip
    if out.is_dir():
        raise AekitError(f"--out {out}: is a folder; give a file name")


def check_grid_fits(out: Path, run) -> None:
    if out.suffix.lower() == ".png" and not run.space.is_image:
        raise AekitError(f"--out {out}: a .png grid needs image data; this model's input is "
                         f"{run.model_config.input_shape} (write .npy, .csv or .parquet)")  # fmt: skip


def cmd_impute(args) -> int:
    check_grid_or_rows_output(args.out)
    run = runs().load_run(args.run, args.device)
    check_grid_fits(args.out, run)
    cells, rows = outputs().impute_file(run, args.input, args.out)
    print(f"filled {cells} missing cells of {rows} rows; wrote {args.out}")
    return 0


def cmd_encode_or_reconstruct(args) -> int:
    encode = args.command == "encode"
    (check_output_path if encode else check_grid_or_rows_output)(args.out)
    run = runs().load_run(args.run, args.device)
    if run.data_config.series:
        return series_codes_or_reconstruction(args, run, encode)
    if not encode:
        check_grid_fits(args.out, run)
    n, chunks = run.chunks(args.input, args.split)
    shape = (run.model_config.latent_dim,) if encode else run.model_config.input_shape
    if not encode and (run.model_config.columns or args.out.suffix.lower() == ".png"):  # a table in its own
        import numpy as np  # columns and categories, or a grid of images: written whole

        outputs().write_rows(np.concatenate([run.reconstruct(x).numpy() for x in chunks]), args.out,
                             run.model_config.columns)  # fmt: skip
        print(f"wrote reconstructions of {n} rows to {args.out}")
        return 0
    from ..data.stream import RowWriter

    with RowWriter(args.out, n, shape, names=outputs().row_names(args.input)) as out, progress_bar(n, args.command) as bar:
        for x in chunks:
            out.write((run.encode(x) if encode else run.reconstruct(x)).numpy())
            bar.update(len(x))
    print(f"wrote {'codes' if encode else 'reconstructions'} of shape {(n, *shape)} to {args.out}")
    return 0


def series_codes_or_reconstruction(args, run, encode: bool) -> int:
    """``aekit encode`` / ``reconstruct`` of a series run: INPUT is a long series; the code of the window starting at
    each step, or the series rebuilt (each step the mean of the windows' reconstructions covering it), its columns
    named as the input's channels (so a reconstruction reads back as a series)."""
    from ..data.stream import RowWriter

    if args.input in ("mnist", "digits") or args.out.suffix.lower() == ".png":
        raise AekitError(f"{args.run} is a series run: give --input a file of one long series and --out a .npy, .csv "
                         "or .parquet file")  # fmt: skip
    series, names = run.series.read(args.input)
    rows = run.series.encode(series, args.input) if encode else run.series.reconstruct(series, args.input)
    with RowWriter(args.out, len(rows), rows.shape[1:], None if encode else names and list(names)) as out:
        out.write(rows)
    what = (f"codes of the {len(rows)} windows of {run.series.window} steps (window n starts at step n)" if encode else
            f"the series rebuilt, {len(rows)} steps x {rows.shape[1]} channel(s) (each step the mean of the windows "
            "covering it)")  # fmt: skip
    print(f"wrote {what} to {args.out}")
    return 0


def check_output_path(out: Path) -> None:
    """Refuse an output whose suffix aekit does not write, or that is a folder, before any work is done."""
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise AekitError(f"--out {out}: unsupported output type {out.suffix or '(none)'!r}; use "
                         f"{' or '.join(OUTPUT_SUFFIXES)}")  # fmt: skip
    if out.is_dir():
        raise AekitError(f"--out {out}: is a folder; give a file name")


def cmd_datasets(args) -> int:
    from ..data.datasets import DATASETS, SOURCES

    for name, (_, help_text) in sorted(DATASETS.items()):
        print(f"{name:<8} {help_text}")
    print(f"\n{outputs().mnist_location()}")
    print("search order: --data-dir, $AEKIT_DATA, the bundled copy, the user cache; then a checked download")
    print("\nyour own data (--data PATH), the first kind that takes the path reads it:")
    for kind, source in SOURCES.items():
        print(f"  {kind:<8} {source.help}")
    print("A .npy, Parquet, shard or image folder source over 2 GiB (as float32) is streamed from disk in chunks.")
    print(f"\ntrained runs that ship with aekit (RUN = pretrained:NAME; aekit pretrained): {', '.join(pretrained.names())}")
    return 0


def cmd_pretrained(args) -> int:
    """List the shipped runs; with NAME, one of them; with --out, copy it into a run of one's own."""
    if args.name is None:
        if args.out is not None:
            raise AekitError("--out copies one pretrained run: name it (aekit pretrained NAME --out DIR)")
        for name in pretrained.names():
            entry = pretrained.entry(name)
            print(f"pretrained:{name:<9} {entry['help']}\n{'':<20} {entry['headline']}")
        print("\nuse one wherever a RUN goes (aekit compress pretrained:codec --input mnist --split test --out t.aek); "
              "aekit pretrained NAME shows how it was trained")  # fmt: skip
        return 0
    entry = pretrained.entry(args.name)
    folder = pretrained.locate(args.name)
    if args.out is not None:
        pretrained.copy(args.name, args.out)
        print(f"copied pretrained:{args.name} into {args.out}: a run of your own to fit priors and scores into "
              f"(aekit fit-prior {args.out} --prior diffusion, aekit fit-score {args.out}) or draw its report")  # fmt: skip
        return 0
    print(f"pretrained:{args.name}: {entry['help']}\n{entry['headline']}\nfolder: {folder} (read-only; every file "
          "checked against the manifest's SHA-256)")  # fmt: skip
    print(f"trained with (seed {entry['seed']}, {entry['threads']} threads, on {entry['cpu']}, aekit "
          f"{entry['aekit_version']}):")  # fmt: skip
    for command in entry["commands"]:
        print(f"  {command}")
    return 0


def cmd_score(args) -> int:
    check_output_path(args.out)
    run = runs().load_run(args.run, args.device)
    if run.data_config.series:
        return score_series(args, run)
    threshold = args.threshold
    if args.contamination is not None:
        threshold = run.fitted.threshold(run.score(run.data().x_train).numpy(), args.contamination)
    n, chunks = run.chunks(args.input, args.split)
    header = ["score"] if threshold is None else ["score", "outlier"]
    per_feature = [f"e{j}" for j in range(run.space.width)] if args.per_feature else []
    width = len(header) + len(per_feature)
    kept, flagged = [], 0  # a sample of the scores for the summary line (all of them up to 1e6 rows)
    import numpy as np

    from ..data.stream import RowWriter

    names = outputs().row_names(args.input)  # an image folder's files: a first column of a CSV or Parquet output
    with (RowWriter(args.out, n, () if width == 1 else (width,), header + per_feature, names) as out,
          progress_bar(n, "score") as bar):  # fmt: skip
        for x in chunks:
            scores = run.score(x).numpy()
            columns = [scores]
            if threshold is not None:
                above = scores > threshold
                flagged += int(above.sum())
                columns.append(above.astype(np.float64))
            columns += [run.fitted.feature_errors(x)] if per_feature else []
            out.write(scores if width == 1 else np.column_stack(columns))
            kept.append(scores[:: max(1, n // 1_000_000)].copy())  # a copy: a view would hold every chunk's scores
            bar.update(len(x))
    sample = np.concatenate(kept) if kept else np.zeros(1)
    print(f"wrote {n} anomaly scores to {args.out} (median {float(np.median(sample)):.4g}, "
          f"max {float(sample.max()):.4g})" + ("" if threshold is None else
          f"; {flagged} above the threshold {threshold:.4g} marked outlier=1") +
          ("; per-feature errors in columns e0..e" + str(run.space.width - 1) if per_feature else ""))  # fmt: skip
    return 0


def score_series(args, run) -> int:
    """``aekit score`` of a series run: one score per row (time step) of INPUT, a long series like the training one."""
    import numpy as np

    from ..data.stream import RowWriter

    if args.input in ("mnist", "digits"):
        raise AekitError(f"--input {args.input}: {args.run} scores a long series; give a file of one (rows time steps)")
    series, names = run.series.read(args.input)
    scored = run.series.scored(series, args.input)
    scores = scored["score"]
    threshold = args.threshold if args.contamination is None else run.series.threshold(args.contamination)
    columns, header = [scores], ["score"]
    if threshold is not None:
        columns.append((scores > threshold).astype(np.float64))
        header.append("outlier")
    if args.per_feature:
        columns += list(scored["channels"].T)
        header += [f"e{j}" for j in range(series.shape[1])]
    with RowWriter(args.out, len(scores), () if len(header) == 1 else (len(header),), header) as out:
        out.write(scores if len(header) == 1 else np.column_stack(columns))
    flagged = "" if threshold is None else (f"; {int((scores > threshold).sum())} above the threshold {threshold:.4g} "
                                            "marked outlier=1")  # fmt: skip
    named = f" ({', '.join(names)})" if names else ""
    print(f"wrote {len(scores)} anomaly scores, one per time step, to {args.out} (windows of {run.series.window} "
          f"steps; median {float(np.median(scores)):.4g}, max {float(scores.max()):.4g}){flagged}"
          + (f"; each channel's error in columns e0..e{series.shape[1] - 1}{named}" if args.per_feature else ""))  # fmt: skip
    return 0


def cmd_plot(args) -> int:
    if args.out is None:
        pretrained.refuse_if_shipped(args.run, "its figures cannot be drawn into it: give --out DIR")
    folder = args.out or args.run / "figures"
    runs().load_run(args.run).analysis.draw(args.kind, folder)
    print(f"wrote {folder / args.kind}.png and .svg")
    return 0


def cmd_export(args) -> int:
    if args.out.suffix.lower() != ".onnx":
        raise AekitError(f"--out {args.out}: an ONNX file must end in .onnx")
    if args.out.is_dir():
        raise AekitError(f"--out {args.out} is a folder; give a file name ending in .onnx")
    run = runs().load_run(args.run)
    run.export(args.out, args.part)
    what = "z" if args.part == "decoder" else "raw x"
    if run.data_config.series and args.part == "score":
        print(f"wrote {args.out}: the score of {args.run} as ONNX, input a series x (T, {run.space.input_shape[0]}) "
              f"of any length T >= {run.space.input_shape[1]}, output one score per step")  # fmt: skip
        return 0
    print(f"wrote {args.out}: the {args.part} of {args.run} as ONNX, input {what} with a dynamic batch axis")
    return 0


def check_port_free(host: str, port: int) -> None:
    """An AekitError naming ``--port`` when ``host:port`` cannot be listened on (in use, or not this machine's)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn listens: TIME_WAIT is no conflict
            probe.bind((host, port))
    except socket.gaierror as err:
        raise AekitError(f"--host {host}: not an address of this machine ({err.strerror})") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise AekitError(f"--port {port}: {host}:{port} is already in use (another server?); pick another port "
                             "with --port N") from None  # fmt: skip
        raise AekitError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None


def cmd_serve(args) -> int:
    try:
        from .serve import serve
    except ImportError:  # fastapi, pydantic or uvicorn missing
        raise AekitError("aekit serve needs the 'serve' extra: pip install 'aekit[serve]'") from None

    check_port_free(args.host, args.port)  # said before the run loads
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
    if args.out is None:
        pretrained.refuse_if_shipped(args.run, "its report cannot be written into it: give --out FILE.html")
    elif args.out.suffix.lower() not in (".html", ".htm"):
        raise AekitError(f"--out {args.out}: a report is an HTML file (.html)")
    print(f"report written: {report().write_report(args.run, out=args.out)}")  # loading the run first names a bad RUN
    return 0


def cmd_error_vs_dim(args) -> int:
    pretrained.refuse_if_shipped(args.run, "error-vs-dim trains its models into it")
    result = sweep().sweep_error_vs_dim(args.run, args.dims, args.epochs, progress=progress_wanted(args))
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
    if outputs().holds_run(args.out) and not args.overwrite:  # train's own message would suggest --resume
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
            "decompress": cmd_decompress, "features": cmd_features, "pretrained": cmd_pretrained}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = int(os.environ.get("RANK", "0")) > 0  # under torchrun, rank 0 speaks for all
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    debug = args.debug or os.environ.get("AEKIT_DEBUG", "") not in ("", "0")
    from ..training.loop import Interrupted  # (torch: only once the arguments were good)

    try:
        if getattr(args, "run", None) is not None:  # pretrained:NAME is a shipped run's folder, once checked
            args.run = pretrained.resolve(args.run)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that left early is met here, not at exit
        return code
    except BrokenPipeError:  # `aekit ... | head`: the reader has what it wanted; end quietly, as a shell's tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's last flush goes nowhere
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended so
    except Interrupted as err:  # Ctrl-C or SIGTERM, after the checkpoint was saved: 128 + the signal, as a shell says
        print(f"aekit {args.command}: {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print(f"aekit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (AekitError, OSError) as err:  # bad input, or what the operating system said about a path
        if debug:
            raise
        if not quiet:  # under torchrun every process fails alike: rank 0 says it once
            print(f"aekit {args.command}: error: {expected_error(err)}", file=sys.stderr)
        return 2


def expected_error(err: BaseException) -> str:
    """One line for an expected failure: aekit's own message, or the path and the operating system's reason."""
    if isinstance(err, OSError) and not isinstance(err, AekitError) and err.strerror:
        where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
        return f"{where}: {err.strerror}" if where else err.strerror
    return " ".join(str(err).split())  # one line, whatever the message held
