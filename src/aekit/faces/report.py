"""One self-contained HTML report per run: config, metrics beside PCA, the chapter's claims in numbers, figures.

Figures are embedded as base64 PNG, so the file opens anywhere without a network or the files beside it.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import tempfile
from pathlib import Path

from ..analysis.evaluate import METRIC_NAMES, NEAR_ZERO
from ..run.format import config_to_dict
from ..run.outputs import write_bytes
from ..run.runs import load_run

log = logging.getLogger(__name__)

CAPTIONS = {
    "reconstructions": "Random test images (top), the autoencoder's reconstructions and PCA's with as many "
    "components. Look at the strokes PCA blurs and the numbers on the right: SSE per image on these images.",
    "samples": "Left: decoding z ~ N(0, I). A plain autoencoder never learned where its codes live, so these "
    "are mostly not digits (the chapter's holes); a VAE was trained to make them digits. Right: z from a Gaussian "
    "fitted to the training codes.",
    "latent": "Codes of 1000 random test examples, coloured by label where the data has labels. Look for one "
    "cluster per class (per digit, for MNIST) and the empty space between clusters.",
    "interpolation": "Decoding along the straight line between two test images' codes. Look at whether the "
    "in-between images stay digit-like or pass through blurry non-digits.",
    "denoising": "Corrupted test images (top), the model's outputs and the clean images, with each row's PSNR "
    "against the clean ones. Look at whether the noise is gone and the strokes are kept.",
    "curves": "Training loss and test error per epoch; on the right the test SSE per image against PCA's. "
    "Look for the gap between the curves (overfitting) and whether the last epochs still improve.",
    "anomalies": "The test images the model scores as most anomalous (the run's own anomaly score, as aekit score "
    "computes it, above each), their reconstructions, and the squared error per pixel: where the reconstruction part "
    "of the score comes from. aekit score RUN --per-feature writes these errors for any input.",
    "codebook": "How often each codebook vector is chosen for the test set, most used first. A codebook that "
    "collapses onto a few vectors wastes its capacity; the perplexity is the number of equally used vectors "
    "the usage is worth.",
    "features": "A sparse autoencoder's most frequent features: each latent's decoder direction (red adds ink, blue "
    "takes it away), the share of test images it fires on, and the test images it is most active on. A feature you "
    "can name is one whose images share one thing: a stroke, a loop, a slant. aekit features RUN writes every "
    "direction.",
    "codec": "Test images and their decodings from the codec's file, each with its bytes: coded alone (one stream, "
    "with the coder's few bytes of flush) and as its share of one file of all the test images (what aekit compress "
    "writes). PNG takes about 270 bytes a digit, WebP lossless about 200.",
    "series": "The run's held-out steps (its last --test-fraction; the channels named as the file names them), the "
    "anomaly score of each step (its most abnormal channel's error over the windows that cover it, standardized on the "
    "training part) with the threshold at the training part's 99th percentile, and the three most abnormal windows, "
    "each in its most abnormal channel, beside their reconstructions.",
    "priors": "36 decoded samples from each latent prior the run has (aekit fit-prior), seed 0, with its FD. Look "
    "at how the holes fill: N(0, I) decodes to blots for a plain autoencoder, a Gaussian fitted to the codes to "
    "blurry in-between digits, a mixture or the diffusion prior to digits of every class.",
    "error-vs-dim": "Test SSE per image against code size for the autoencoder and PCA. Look at how many PCA "
    "components the autoencoder's error is worth.",
}
EXTRA_METRICS = {
    "code_mean_abs": "mean |z| of the test codes",
    "code_near_zero": f"share of code units with |z| < {NEAR_ZERO:g}",
    "denoise_psnr_noisy": "PSNR of the noisy test images (dB)",
    "denoise_psnr_denoised": "PSNR of the denoised test images (dB)",
    "denoise_test_mse_per_pixel_noisy": "MSE per feature of the noisy test data",
    "denoise_test_mse_per_pixel_denoised": "MSE per feature of the denoised test data",
    "linear_max_principal_angle_deg": "largest principal angle between the decoder's columns and PCA's subspace (deg)",
    "vq_codebook_usage": "share of the codebook's vectors used on the test set",
    "vq_perplexity": "perplexity of the codebook symbols on the test set (exp of their entropy)",
    "sae_l0": "sparse code: latents active per test row (L0)",
    "sae_dead": "sparse code: share of latents never active on the test rows",
    "sae_fvu": "sparse code: fraction of variance unexplained",
    "sae_pca_fvu": "PCA with as many components as the L0: fraction of variance unexplained",
    "sae_shrinkage": "sparse code: norm of the reconstructions over the rows' (below 1: shrunk)",
    "rate_bits_tables": "codec: bits per row under its frozen tables",
    "rate_bits_estimated": "codec: bits per row its density estimated",
    "pca_coding_psnr": "PCA transform coding at the codec's rate: PSNR (dB)",
}
HEADS = {"test_mse_per_pixel": "MSE / pixel", "test_sse_per_image": "SSE / image", "test_bce_per_pixel": "BCE / pixel",
         "psnr": "PSNR (dB)"}  # fmt: skip
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}
img{max-width:100%;border:1px solid #eee}figcaption{color:#555;max-width:900px}code{background:#f3f3f3}
.note{color:#666}"""


def words(metrics: dict[str, float]) -> tuple[str, str]:
    """What a feature and an example are called: pixel and image, or (a table, an array of rows) feature and row."""
    return ("pixel", "image") if metrics.get("image_data", 1.0) else ("feature", "row")


def pca_label(metrics: dict[str, float]) -> str:
    """PCA's row label: ``PCA (k=32)``, or what it was when the data has fewer features or rows than the code."""
    k = metrics.get("latent_dim", "?")
    used = int(metrics.get("pca_components", k if isinstance(k, (int, float)) else 0))
    if metrics.get("pca_at_l0"):
        return f"PCA (k={used}: the L0)"
    if used == k:
        return f"PCA (k={k})"
    if used == metrics.get("features"):
        return f"PCA (all {used} components)"
    return f"PCA ({used} components: as many as rows)"


def format_metrics(metrics: dict[str, float]) -> str:
    """A small table: the autoencoder's row and PCA's row in the same units (a table's in its own words)."""
    k = metrics.get("latent_dim", "?")
    names = [n for n in METRIC_NAMES if n in metrics]
    feature, example = words(metrics)
    heads = {"test_mse_per_pixel": f"MSE/{feature}", "test_sse_per_image": f"SSE/{example}",
             "test_bce_per_pixel": f"BCE/{feature}", "psnr": "PSNR (dB)"}  # fmt: skip
    lines = [f"{'':<24}" + "".join(f"{heads[n]:>12}" for n in names)]
    for label, prefix in ((f"autoencoder (k={k})", ""), (pca_label(metrics), "pca_")):
        cells = []
        for n in names:
            value = metrics.get(prefix + n, float("nan"))
            cells.append(f"{value:>12.5f}" if n == "test_mse_per_pixel" else f"{value:>12.3f}")
        lines.append(f"{label:<24}" + "".join(cells))
    if metrics.get("pca_mean_filled"):
        lines.append("(PCA is fitted on the observed cells: each missing one filled with its feature's training mean)")
    return "\n".join(lines + format_imputation(metrics) + format_sparse(metrics) + format_codec(metrics) +
                     format_generation(metrics))  # fmt: skip


def format_sparse(metrics: dict[str, float]) -> list[str]:
    """A sparse autoencoder's code (``sae_*``) beside PCA with as many components as its L0."""
    if "sae_l0" not in metrics:
        return []
    return ["", f"sparse code on the test rows: {metrics['sae_l0']:.2f} of {int(metrics['latent_dim'])} latents active "
            f"per row, {metrics['sae_dead']:.1%} never active, shrinkage {metrics['sae_shrinkage']:.3f}",
            f"{'':<24}{'FVU':>12}", f"{'sparse autoencoder':<24}{metrics['sae_fvu']:>12.4f}",
            f"{'PCA (k=' + str(int(metrics['sae_pca_components'])) + ')':<24}{metrics['sae_pca_fvu']:>12.4f}"]


def format_codec(metrics: dict[str, float]) -> list[str]:
    """A codec's rate (``rate_*``) beside PCA transform coding at that rate."""
    if "rate_bits_tables" not in metrics:
        return []
    return ["", f"codec: {metrics['rate_bits_tables'] / 8:.2f} bytes per row under its integer tables (its density "
            f"estimated {metrics['rate_bits_estimated'] / 8:.2f}); PSNR {metrics.get('psnr', float('nan')):.2f} dB",
            f"PCA coding at that rate ({metrics['pca_coding_bits'] / 8:.2f} bytes): PSNR "
            f"{metrics['pca_coding_psnr']:.2f} dB"]


def format_imputation(metrics: dict[str, float]) -> list[str]:
    """The impute objective's rows (``impute_*``): filling hidden test cells beside the baseline that fills with the
    training means (and, for categorical columns, the most frequent category)."""
    if "impute_hidden_cells" not in metrics:
        return []
    lines = ["", f"{int(metrics['impute_hidden_cells'])} observed test cells hidden (20%), then filled",
             f"{'':<20}{'RMSE':>10}{'accuracy':>10}"]  # fmt: skip
    for label, suffix, baseline in (("autoencoder", "", ""), ("mean / mode fill", "_mean_fill", "_mode")):
        rmse, accuracy = metrics.get("impute_rmse" + suffix), metrics.get("impute_accuracy" + baseline)
        lines.append(f"{label:<20}" + (f"{rmse:>10.4f}" if rmse is not None else f"{'-':>10}") +
                     (f"{accuracy:>10.3f}" if accuracy is not None else f"{'-':>10}"))  # fmt: skip
    return lines


def generation_space(metrics: dict[str, float]) -> str:
    """The name of the feature space the ``gen_*`` metrics were measured in."""
    pca = int(metrics.get("gen_pca_components", 0))
    return f"FD (PCA-{pca} of the training rows)" if pca else "FD (aekit MNIST classifier)"


def format_generation(metrics: dict[str, float]) -> list[str]:
    """The sample-quality rows (``gen_*``, once a prior is fitted) as text lines: floor, reconstructions, priors."""
    rows = [key[4:-3] for key in metrics if key.startswith("gen_") and key.endswith("_fd")]
    if not rows:
        return []
    space = generation_space(metrics)
    lines = ["", f"samples of each prior, {int(metrics.get('gen_samples', 0))} rows, against the test rows; {space}",
             f"{'':<20}{'FD':>10}{'precision':>11}{'recall':>9}"]  # fmt: skip
    for row in rows:
        label = {"floor": "floor (train rows)", "reconstructions": "reconstructions"}.get(row, f"prior {row}")
        lines.append(f"{label:<20}{metrics[f'gen_{row}_fd']:>10.3f}{metrics[f'gen_{row}_precision']:>11.3f}"
                     f"{metrics[f'gen_{row}_recall']:>9.3f}")  # fmt: skip
    return lines


def make_figures(run_path: str | Path, run=None, folder: Path | None = None) -> dict[str, Path]:
    """Draw every figure that applies to the run (``plots.figures_for``) into ``folder`` (default: ``RUN/figures/``);
    name -> PNG path. ``run``: the run already loaded from ``run_path``, if the caller has it."""
    run = run or load_run(run_path)
    folder = Path(run_path) / "figures" if folder is None else folder
    made = {}
    for name in run.analysis.kinds():
        if name == "curves" and not run.history():
            continue
        log.info("drawing %s", name)
        run.analysis.draw(name, folder)
        made[name] = folder / f"{name}.png"
    if run.space.is_image and run.model_config.objective.wing == "codec":
        log.info("drawing codec")
        run.codec.draw(run.data().x_test[:8], folder / "codec")
        made["codec"] = folder / "codec.png"
    if run.data_config.series:
        log.info("drawing series")
        run.series.draw(folder / "series")
        made["series"] = folder / "series.png"
    if run.space.is_image and len(run.priors.names()) > 1:
        log.info("drawing priors")
        run.priors.draw(run.metrics(), folder / "priors")
        made["priors"] = folder / "priors.png"
    swept = Path(run_path) / "figures" / "error-vs-dim.png"  # aekit error-vs-dim draws it there
    if swept.is_file():
        made["error-vs-dim"] = swept
    return made


def _flat(section: dict, prefix: str = "") -> dict:
    """``{"body": {"kind": "mlp", "hidden": [256]}}`` -> ``{"body.kind": "mlp", "body.hidden": [256]}``."""
    out = {}
    for key, value in section.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def _table(rows: list[list[str]], head: list[str]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    return "".join(out) + "</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.5f}" if abs(value) < 0.1 else f"{value:.3f}"
    return str(value)


def write_report(run_path: str | Path, figures: dict[str, Path] | None = None, out: str | Path | None = None) -> Path:
    """Write ``RUN/report.html`` (drawing the figures into ``RUN/figures`` first unless given), or ``out`` (the
    figures drawn in a temporary folder, as they are all embedded), and return its path."""
    run_path = Path(run_path)
    run = load_run(run_path)
    if out is not None and figures is None:
        with tempfile.TemporaryDirectory() as folder:
            return write_report(run_path, make_figures(run_path, run, Path(folder)), out)
    figures = make_figures(run_path, run) if figures is None else figures
    metrics = run.metrics()
    config = {"model": config_to_dict(run.model_config), "data": config_to_dict(run.data_config),
              "train": config_to_dict(run.train_config)}
    k = metrics.get("latent_dim", config["model"]["latent_dim"])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>aekit report: {html.escape(run_path.name)}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>aekit report: <code>{html.escape(str(run_path))}</code></h1>",
             *_metrics_section(metrics, k), *saved_estimator_note(run_path, run), *_claims_section(metrics, k),
             *_generation_section(metrics),
             *_figures_section(figures, run_path),
             "<h2>Configuration</h2>"]  # fmt: skip
    for section in ("model", "data", "train"):
        rows = [[key, json.dumps(value)] for key, value in _flat(config[section]).items()]
        parts.append(f"<h3>{section}</h3>" + _table(rows, ["field", "value"]))
    parts.append(f"<p class='note'>aekit {html.escape(str(run.rundir.stored_version()))}</p></body></html>")
    return write_bytes(Path(out) if out is not None else run_path / "report.html", "\n".join(parts).encode())


def _metrics_section(metrics: dict, k) -> list[str]:
    names = [n for n in METRIC_NAMES if n in metrics]
    feature, example = words(metrics)
    heads = {n: h.replace("pixel", feature).replace("image", example) for n, h in HEADS.items()}
    filled = (" Missing cells are left out of every error; PCA is fitted with each one filled with its feature's "
              "training mean." if metrics.get("pca_mean_filled") else "")  # fmt: skip
    parts = ["<h2>Test metrics beside PCA</h2>",
             _table([[f"autoencoder ({k}-D code)", *(_fmt(metrics[n]) for n in names)],
                     [pca_label(metrics), *(_fmt(metrics.get("pca_" + n, "")) for n in names)]],
                    ["model", *(heads[n] for n in names)]),
             f"<p class='note'>SSE / {example}: squared error summed over an example's features, averaged over the "
             f"{metrics.get('n_test', '')} test examples (the unit of Hinton &amp; Salakhutdinov 2006, whose 30-D "
             "deep autoencoder reached 3.00 and PCA-30 13.87 on MNIST). PCA is fitted on the same training "
             f"data.{filled}</p>"]  # fmt: skip
    for title, lines in (("Filling missing cells", format_imputation(metrics)), ("The sparse code",
                         format_sparse(metrics)), ("Compression", format_codec(metrics))):  # fmt: skip
        if lines:
            parts.append(f"<h2>{title}</h2><pre>" + html.escape("\n".join(lines[1:])) + "</pre>")
    return parts


def saved_estimator_note(run_path: Path, run) -> list[str]:
    """Which rows a saved estimator's metrics are on: it was fitted on every row it saved, so its "test" rows are
    some of those (in-sample), beside a PCA fitted on the others."""
    if not (run_path / "estimator.json").is_file():
        return []
    data = run.data()
    total, test = len(data.x_train) + len(data.x_test), len(data.x_test)
    return [f"<p class='note'><b>Rows scored.</b> This run was saved by a scikit-learn estimator, which was fitted on "
            f"all {total} rows it saved ({html.escape(run.data_config.name)}): the {test} \"test\" rows above are "
            f"{test} of those, in-sample, not held out, and PCA beside it is fitted on the other {total - test}. "
            "Score rows it never saw (aekit score RUN --input NEW) to measure it on new data.</p>"]  # fmt: skip


def _claims_section(metrics: dict, k) -> list[str]:
    """The chapter's claims in numbers (holes, probes) and the other numbers a model adds."""
    parts = []
    if "holes" in metrics or any(key.startswith("probe_") for key in metrics):
        parts.append("<h2>The chapter's claims, in numbers</h2>")
    if "holes" in metrics:
        parts.append(
            f"<p><b>Holes:</b> {metrics['holes']:.3f}. A 5-nearest-neighbour classifier tells random z ~ N(0, I) "
            f"from the codes of real test images with this accuracy (5-fold cross-validated): 0.5 would mean "
            "random z land where real codes are, 1.0 that they never do, so their decodings are what the decoder "
            f"never learned. For z drawn from a Gaussian fitted to the codes: {metrics.get('holes_fitted', 0):.3f}.</p>"
        )
    probes = [(name, metrics.get(f"probe_logreg_{key}"), metrics.get(f"probe_knn_{key}"))
              for key, name in (("ae", f"autoencoder codes ({k}-D)"), ("pca", f"PCA codes ({k}-D)"),
                                ("pixels", "raw inputs"))]  # fmt: skip
    if any(p[1] is not None for p in probes):
        parts.append("<p><b>Feature quality:</b> test accuracy of probes fitted on training features.</p>")
        parts.append(_table([[n, f"{a:.3f}", f"{b:.3f}"] for n, a, b in probes if a is not None],
                            ["features", "logistic regression", "5-nearest neighbours"]))  # fmt: skip
    extra = [(label, metrics[key]) for key, label in EXTRA_METRICS.items() if key in metrics]
    if extra:
        parts.append("<h2>More numbers</h2>")
        parts.append(_table([[label, _fmt(value)] for label, value in extra], ["measure", "value"]))
    return parts


GENERATION_HEADS = {"fd": "FD", "precision": "precision", "recall": "recall", "confidence": "confidence",
                    "label_entropy": "label entropy"}  # fmt: skip


def _generation_section(metrics: dict) -> list[str]:
    """Sample quality of each fitted prior beside the floor and the reconstructions (aekit evaluate measures it)."""
    rows = [key.removeprefix("gen_").removesuffix("_fd") for key in metrics
            if key.startswith("gen_") and key.endswith("_fd")]  # fmt: skip
    if not rows:
        return []
    space = generation_space(metrics)
    heads = [h for h in GENERATION_HEADS if f"gen_floor_{h}" in metrics]
    names = {"floor": "floor: training images", "reconstructions": "reconstructions of those images"}
    table = [[names.get(row, f"prior: {row}"), *(_fmt(metrics[f"gen_{row}_{h}"]) for h in heads),
              f"{metrics[f'gen_{row}_fd'] / max(metrics['gen_floor_fd'], 1e-12):.1f}"] for row in rows]  # fmt: skip
    return ["<h2>Samples from the latent priors, measured</h2>",
            _table(table, ["", *(GENERATION_HEADS[h] for h in heads), "FD / floor"]),
            f"<p class='note'>{html.escape(space)}: the Fréchet distance between Gaussians fitted to the features of "
            f"the {int(metrics.get('gen_samples', 0))} rows of each line and of the test images (lower is closer; "
            "it compares only within this feature space, so read it against the floor: real training images). "
            "Precision: the share of samples inside the test images' 3-nearest-neighbour balls (are they "
            "realistic?); recall: the share of test images inside the samples' balls (is every kind covered?), "
            "after Kynkäänniemi et al. 2019. The reconstructions are what the decoder makes of real codes: about "
            "the best any prior of this model can reach.</p>"]  # fmt: skip


def _figures_section(figures: dict[str, Path], run_path: Path) -> list[str]:
    parts = ["<h2>Figures</h2>"]
    from ..analysis.plots import KINDS  # (matplotlib: loaded to draw, not to print metrics)

    for name in (*KINDS, "series", "codec", "priors", "error-vs-dim"):
        if name not in figures:
            continue
        encoded = base64.b64encode(Path(figures[name]).read_bytes()).decode()
        parts.append(f"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,{encoded}'>"
                     f"<figcaption><b>{name}.</b> {html.escape(CAPTIONS[name])}</figcaption></figure>")  # fmt: skip
    if "error-vs-dim" not in figures:
        parts.append(f"<p class='note'>No error-vs-dim figure yet: <code>aekit error-vs-dim {html.escape(str(run_path))}"
                     "</code> trains the models it needs.</p>")  # fmt: skip
    return parts
