"""The ``nanoseg`` command line. It only parses options and calls the Python API.

Expected problems (bad files, bad options) are :class:`~nanoseg.errors.NanosegError`: they are
printed as one line and the command exits with code 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from nanoseg import __version__
from nanoseg.errors import NanosegError
from nanoseg.runtime import keep_freed_memory

app = typer.Typer(
    name="nanoseg",
    help="Find nanoparticles in (HR)TEM micrographs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])

#: Exit code for expected errors (bad input, bad options), as click uses for usage errors.
EXIT_INPUT = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_INPUT)


def _expected_errors(func: F) -> F:
    """Turn NanosegError into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NanosegError as err:
            raise _fail(str(err)) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nanoseg {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find nanoparticles in (HR)TEM micrographs."""
    # A command works through many large arrays: reusing freed memory saves the page faults
    # of building each one anew (nanoseg.runtime).
    keep_freed_memory()


@app.command()
def info(
    files: Annotated[
        list[Path],
        typer.Argument(help="Micrograph files (MRC, DM3/4, SER, EMD, TIFF, PNG, JPEG, NPY)."),
    ],
    frame: Annotated[
        str,
        typer.Option(help="How stacks become one image: 'sum' of all frames, or a frame number."),
    ] = "sum",
) -> None:
    """Print shape, dtype, pixel size, value range and format, one line per file."""
    from nanoseg.io import read_micrograph

    choice = _parse_frame(frame)
    failed = 0
    for path in files:
        try:
            mic = read_micrograph(path, frame=choice)
        except NanosegError as err:
            typer.echo(f"error: {err}", err=True)
            failed += 1
            continue
        typer.echo(f"{path}: {mic.describe()}")
    if failed:
        raise typer.Exit(EXIT_INPUT)


def _widths(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise _fail(f"--widths must be integers separated by commas, not '{text}'") from None


def _parse_frame(frame: str) -> int | str:
    if frame == "sum":
        return "sum"
    try:
        return int(frame)
    except ValueError:
        raise _fail(f"--frame must be 'sum' or a frame number, not '{frame}'") from None


@app.command()
@_expected_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")] = Path(
        "nanoseg-demo"
    ),
) -> None:
    """Run nanoseg on its built-in example micrograph and say where the results are."""
    from nanoseg.demo import run_demo

    for line in run_demo(out):
        typer.echo(line)


@app.command()
@_expected_errors
def simulate(
    out_dir: Annotated[Path, typer.Argument(help="Output folder (images/, labels/, metadata/).")],
    n: Annotated[int, typer.Option("--n", help="Number of micrographs.")] = 100,
    materials: Annotated[
        str, typer.Option(help="Comma-separated particle materials: au,pd,pt,ag,cdse,cdse-zb.")
    ] = "au,pd,cdse",
    size: Annotated[int, typer.Option(help="Micrograph side in pixels.")] = 1024,
    pixel_size: Annotated[
        str, typer.Option(help="Pixel size in nm, one value or a range 'min:max'.")
    ] = "0.02:0.05",
    particle_size: Annotated[
        str, typer.Option(help="Particle diameter in nm, one value or a range 'min:max'.")
    ] = "1.5:10",
    variants: Annotated[
        int, typer.Option(help="Micrographs recorded per simulated scene (lens, dose, camera).")
    ] = 10,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    film_roughness: Annotated[
        bool,
        typer.Option(
            "--film-roughness",
            help="Vary the carbon film's thickness (more speckle at medium magnification).",
        ),
    ] = False,
) -> None:
    """Simulate labelled TEM micrographs: multislice (abTEM), lens, dose noise and camera."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from nanoseg.simulate import parse_range, validate
    from nanoseg.simulate import simulate as run_simulation

    pixel_range = parse_range(pixel_size, "--pixel-size")
    particle_range = parse_range(particle_size, "--particle-size")
    # Refuse an impossible request before the progress bar appears.
    validate(n, materials.split(","), size, pixel_range, particle_range, variants, workers)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("simulating", total=n)
        out = run_simulation(
            out_dir,
            n,
            materials=materials.split(","),
            size=size,
            pixel_size=pixel_range,
            particle_size=particle_range,
            variants=variants,
            seed=seed,
            workers=workers,
            film_roughness=film_roughness,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    typer.echo(f"{n} micrographs in {out}/images, labels in {out}/labels, table {out}/metadata.csv")


dataset_app = typer.Typer(
    help="Build and inspect training data sets (HDF5 tiles).", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
@_expected_errors
def dataset_build(
    images: Annotated[Path, typer.Option(help="Folder of micrographs.")],
    labels: Annotated[Path, typer.Option(help="Folder of label maps (PNG/TIFF, same stems).")],
    out: Annotated[Path, typer.Option(help="HDF5 file to write.")],
    tile: Annotated[int, typer.Option(help="Tile side in pixels.")] = 512,
    stride: Annotated[int | None, typer.Option(help="Tile step in pixels [default: tile].")] = None,
    median: Annotated[int, typer.Option(help="Median filter size (1 = off).")] = 3,
    normalize: Annotated[
        str, typer.Option(help="dataset-max (the paper's), image-max, percentile or zscore.")
    ] = "dataset-max",
    pixel_size: Annotated[
        float | None, typer.Option(help="Resample every micrograph to this pixel size (nm).")
    ] = None,
    keep_empty: Annotated[
        float, typer.Option(help="Fraction of tiles without particles to keep.")
    ] = 0.0,
    split: Annotated[
        str, typer.Option(help="Train,validation,test shares of tiles (by micrograph).")
    ] = "0.55,0.18,0.27",
    material_from: Annotated[
        Path | None,
        typer.Option(help="CSV (stem/file + material [+ scene]) or folder of <stem>.json."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split and kept empty tiles.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    allow_unmatched: Annotated[
        bool, typer.Option(help="Skip micrographs or labels without a partner.")
    ] = False,
) -> None:
    """Cut micrographs and label maps into normalised tiles in one HDF5 file (the paper's way)."""
    from rich.progress import Progress

    from nanoseg.dataset import DatasetError, build_dataset, format_summary

    try:
        fractions = [float(v) for v in split.split(",")]
    except ValueError:
        raise _fail(f"--split must be three comma-separated fractions, not '{split}'") from None
    if not str(out).lower().endswith((".h5", ".hdf5")):
        raise DatasetError("output file must end in .h5 or .hdf5", out)
    with Progress(transient=True) as bar:
        task = bar.add_task("reading", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        summary = build_dataset(
            images, labels, out, tile=tile, stride=stride, median=median,
            normalize_mode=normalize, pixel_size=pixel_size, keep_empty=keep_empty,
            split=fractions, material_from=material_from, seed=seed, overwrite=overwrite,
            allow_unmatched=allow_unmatched, progress=report,
        )  # fmt: skip
    typer.echo(f"wrote {out}")
    for line in format_summary(summary):
        typer.echo(line)


@dataset_app.command("info")
@_expected_errors
def dataset_info(data: Annotated[Path, typer.Argument(help="Data set file (.h5).")]) -> None:
    """Print the summary of an existing data set."""
    from nanoseg.dataset import dataset_summary, format_summary

    for line in format_summary(dataset_summary(data)):
        typer.echo(line)


# Options shared by the commands that run a network.
DeviceOption = Annotated[
    str,
    typer.Option(
        help="Where the network runs: auto (a CUDA GPU when torch sees one, else the CPU), "
        "cpu, cuda or cuda:N."
    ),
]


@app.command("train")
@_expected_errors
def train_command(
    data: Annotated[Path, typer.Argument(help="Data set from 'nanoseg dataset build'.")],
    out: Annotated[Path, typer.Option(help="Run folder (models, log, loss curve).")],
    preset: Annotated[
        str,
        typer.Option(
            help="'paper' (the released recipe), 'default', or 'builtin' (the bundled model's)."
        ),
    ] = "default",
    epochs: Annotated[int | None, typer.Option(help="Most epochs.")] = None,
    samples_per_epoch: Annotated[int | None, typer.Option(help="Samples per epoch.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience.")] = None,
    min_delta: Annotated[float | None, typer.Option(help="Smallest loss improvement.")] = None,
    crop: Annotated[int | None, typer.Option(help="Train on random crops of this size.")] = None,
    threshold_metric: Annotated[
        str | None, typer.Option(help="Threshold maximises 'pixel_accuracy' or 'dice'.")
    ] = None,
    threshold_split: Annotated[
        str | None, typer.Option(help="Choose it on 'validation' or 'train' (the paper's).")
    ] = None,
    init: Annotated[
        Path | None, typer.Option(help="Start from 'builtin' or a model folder (fine-tuning).")
    ] = None,
    widths: Annotated[
        str | None,
        typer.Option(
            help="Channels per U-Net level, comma-separated (the preset's: 4,8,16,32, or "
            "4,8,16,32,64 for builtin)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out.")] = False,
    device: DeviceOption = "auto",
) -> None:
    """Train the U-Net; keep the best model by validation loss and choose its threshold."""
    from nanoseg.train import make_config, train

    config = make_config(
        preset, epochs=epochs, samples_per_epoch=samples_per_epoch, batch_size=batch_size,
        lr=lr, patience=patience, min_delta=min_delta, crop=crop,
        threshold_metric=threshold_metric, threshold_split=threshold_split,
        init=None if init is None else str(init), seed=seed, widths=_widths(widths),
    )  # fmt: skip

    def report(row: dict) -> None:
        mark = " *" if row["improved"] else ""
        typer.echo(
            f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f}  "
            f"validation loss {row['val_loss']:.4f}  "
            f"{row['samples_per_second']:.1f} samples/s{mark}"
        )

    card = train(data, out, config, resume=resume, progress=report, device=device)
    metrics = card["metrics"]["validation"]
    typer.echo(
        f"best epoch {card['epoch']}: threshold {card['threshold']:.2f} "
        f"(max {card['threshold_metric']} on {card['threshold_split']}); validation pixel "
        f"accuracy {metrics['pixel_accuracy']:.3f}, Dice {metrics['dice']:.3f} -> {out / 'best'}"
    )


@app.command()
@_expected_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model folder (model.safetensors + model.json).")],
    data: Annotated[Path, typer.Argument(help="Data set file (.h5) from 'dataset build'.")],
    out: Annotated[Path, typer.Option(help="Folder for metrics (JSON, CSV) and figures.")],
    split: Annotated[
        str, typer.Option(help="Split to evaluate: train, validation or test.")
    ] = "test",
    threshold: Annotated[
        float | None,
        typer.Option(help="Particle probability threshold (default: the model card's, else 0.5)."),
    ] = None,
    device: DeviceOption = "auto",
) -> None:
    """Score a model on a data set split, per material and overall, and draw the figures."""
    from nanoseg.evaluate import evaluate_model, format_metrics

    metrics = evaluate_model(model, data, out, split=split, threshold=threshold, device=device)
    for warning in metrics["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(
        f"{metrics['name']} on the {split} split ({metrics['n_tiles']} tiles), "
        f"threshold {metrics['threshold']:g} ({metrics['threshold_source']})"
    )
    for line in format_metrics(metrics):
        typer.echo(line)
    names = ", ".join(Path(f).name for f in metrics["files"].values())
    typer.echo(f"metrics and figures in {out}: {names}")


# Options shared by the batch commands (segment, threshold).
BatchInputs = Annotated[
    list[str], typer.Argument(help="Micrograph files, folders or glob patterns ('**' recurses).")
]
BatchOut = Annotated[Path, typer.Option(help="Output folder (created; finished files are kept).")]
PixelSizeOption = Annotated[
    str | None,
    typer.Option(
        help="Pixel size in nm for every input, or 'auto' to estimate the particle scale from "
        "the image (default: each file's own; estimated when a file has none)."
    ),
]
MinAreaOption = Annotated[
    float | None,
    typer.Option(
        help="Drop particles smaller than this, nm^2 (default 1 nm^2; 12 px without a pixel size)."
    ),
]
WorkersOption = Annotated[
    int, typer.Option(help="Worker processes on a local Dask cluster (1: no Dask).")
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(help="Address of a running Dask scheduler, e.g. tcp://10.0.0.1:8786."),
]
AnnotationsOption = Annotated[
    bool,
    typer.Option(
        "--mask-annotations/--keep-annotations",
        help="Leave out scale bars and text burned into exported images (flat black or white "
        "shapes with sharp edges near the image's edges), or segment every pixel as it is.",
    ),
]


@app.command()
@_expected_errors
def segment(
    inputs: BatchInputs,
    out: BatchOut,
    model: Annotated[
        str, typer.Option(help="'builtin' (shipped with nanoseg) or a model folder.")
    ] = "builtin",
    pixel_size: PixelSizeOption = None,
    tta: Annotated[
        str, typer.Option(help="Test-time augmentation: none, flip (x4) or d4 (x8).")
    ] = "none",
    threshold: Annotated[
        float | None,
        typer.Option(help="Particle probability threshold (default: the model card's)."),
    ] = None,
    min_area: MinAreaOption = None,
    precision: Annotated[
        str,
        typer.Option(
            help="Network arithmetic: auto (bfloat16 where the CPU has it natively, 2-3x "
            "faster), float32 or bfloat16."
        ),
    ] = "auto",
    device: DeviceOption = "auto",
    edge: Annotated[
        str,
        typer.Option(
            help="Particle outlines: contrast (moved to the half-contrast edge, as drawn by "
            "hand) or network (the model's own outline, the simulations' geometric footprint)."
        ),
    ] = "contrast",
    edge_level: Annotated[
        float,
        typer.Option(help="Fraction of the particle's contrast where --edge contrast puts it."),
    ] = 0.5,
    min_relative_diameter: Annotated[
        float,
        typer.Option(
            help="Drop detections narrower than this fraction of the micrograph's typical "
            "particle (not at the border); 0 keeps all, e.g. for small particles beside large."
        ),
    ] = 0.2,
    mask_annotations: AnnotationsOption = True,
    workers: WorkersOption = 1,
    scheduler: SchedulerOption = None,
) -> None:
    """Segment micrographs: masks, probability maps, overlays and particle tables in nm."""
    from nanoseg.batch import BatchOptions

    options = BatchOptions(
        model=model,
        pixel_size=pixel_size,
        tta=tta,
        threshold=threshold,
        min_area_nm2=min_area,
        min_relative_diameter=min_relative_diameter,
        precision=precision,
        device=device,
        edge=edge,
        edge_level=edge_level,
        mask_annotations=mask_annotations,
    )
    _run_batch(inputs, out, options, workers, scheduler)


def _pixel_size(text: str | float | None) -> float | str | None:
    """``--pixel-size``: None, ``"auto"`` or a positive number of nm."""
    if text is None or text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise _fail(f"--pixel-size must be a number of nm or 'auto', not '{text}'") from None
    if not value > 0:
        raise _fail(f"--pixel-size must be positive, not {text}")
    return value


def _run_batch(inputs: list[str], out: Path, options: Any, workers: int, scheduler: str | None):
    """Run a batch with a progress bar and report it (segment and threshold)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from nanoseg.batch import segment_batch

    if workers < 1:
        raise _fail(f"--workers must be at least 1, not {workers}")
    options = dataclasses.replace(options, pixel_size=_pixel_size(options.pixel_size))
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("segmenting", total=None)

        def report(done: int, total: int, row: dict) -> None:
            bar.update(task, completed=done, total=total)
            if row.get("status") == "error":
                bar.console.print(
                    f"error: {row['error']}", style="red", highlight=False, soft_wrap=True
                )

        result = segment_batch(
            inputs, out, options, workers=workers, scheduler=scheduler, progress=report
        )
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    particles = sum(int(r["n_particles"]) for r in ok)
    typer.echo(
        f"{len(ok)} micrograph(s) segmented ({result['skipped']} already done), "
        f"{result['failed']} failed; {particles} particles"
    )
    if result["missing_pixel_size"]:
        typer.echo(
            f"warning: {result['missing_pixel_size']} micrograph(s) have no pixel size: "
            "measured in px (give --pixel-size)",
            err=True,
        )
    typer.echo(f"summary:   {result['summary']}")
    typer.echo(f"histogram: {result['histogram']}")
    typer.echo(f"log:       {result['log']}")
    if result["failed"]:
        raise typer.Exit(1)


@app.command()
@_expected_errors
def threshold(
    inputs: BatchInputs,
    out: BatchOut,
    method: Annotated[str, typer.Option(help="otsu, li or local.")] = "otsu",
    sigma: Annotated[
        str, typer.Option(help="Gaussian smoothing, px, or 'auto' (from the particle scale).")
    ] = "auto",
    background: Annotated[
        float | None, typer.Option(help="Sigma of the subtracted background, px (25 x sigma).")
    ] = None,
    bright: Annotated[
        bool, typer.Option(help="Particles brighter than the support (dark field, HAADF).")
    ] = False,
    pixel_size: PixelSizeOption = None,
    min_area: MinAreaOption = None,
    mask_annotations: AnnotationsOption = True,
    workers: WorkersOption = 1,
    scheduler: SchedulerOption = None,
) -> None:
    """The classical baseline: smooth, subtract the background, threshold; same outputs."""
    from nanoseg.baselines import ThresholdSegmenter
    from nanoseg.batch import BatchOptions

    if sigma != "auto":
        try:
            sigma = float(sigma)  # type: ignore[assignment]
        except ValueError:
            raise _fail(f"--sigma must be a number of px or 'auto', not '{sigma}'") from None
    ThresholdSegmenter(method, sigma, background)  # checks the options before any work
    options = BatchOptions(
        method="threshold",
        threshold_method=method,
        sigma=sigma,
        background=background,
        polarity="bright" if bright else "dark",
        pixel_size=pixel_size,
        min_area_nm2=min_area,
        mask_annotations=mask_annotations,
    )
    _run_batch(inputs, out, options, workers, scheduler)


@app.command("import-keras")
@_expected_errors
def import_keras_command(
    weights: Annotated[
        Path, typer.Argument(help="Keras 2 HDF5 weights file of the paper's U-Net.")
    ],
    out: Annotated[Path, typer.Option(help="Model folder to write (safetensors + JSON card).")],
) -> None:
    """Convert the paper's released Keras weights into a nanoseg model folder."""
    from nanoseg.model import import_keras, save_model

    if out.resolve() == weights.resolve():
        raise _fail(f"{out}: --out would overwrite the input weights file")
    model, info = import_keras(weights)
    card = {
        "source": {"keras_weights": weights.name, "sha256": info["sha256"]},
        # The paper's recipe: 3x3 median filter, then divide by the maximum (per image here,
        # since the dataset maximum of the paper's training data is not in the file).
        "preprocessing": {"median": 3, "normalize": "image-max"},
        "threshold": 0.5,
        "pixel_size_nm": None,
    }
    folder = save_model(out, model, card)
    typer.echo(f"{weights}: {model.config.describe()} -> {folder}")


@app.command("bragg")
@_expected_errors
def bragg_command(
    inputs: BatchInputs,
    out: BatchOut,
    pixel_size: Annotated[
        str | None,
        typer.Option(
            help="Pixel size in nm for every input (default: each file's own): peaks are looked "
            "for at lattice spacings of 0.15-0.5 nm; without one ('auto'), at periods of "
            "2.2-25 px."
        ),
    ] = None,
    min_area: MinAreaOption = None,
    mask_annotations: AnnotationsOption = True,
    workers: WorkersOption = 1,
    scheduler: SchedulerOption = None,
) -> None:
    """Bragg-peak filtering: particles where the lattice gives Fourier peaks; same outputs."""
    from nanoseg.batch import BatchOptions

    options = BatchOptions(
        method="bragg",
        pixel_size=pixel_size,
        min_area_nm2=min_area,
        mask_annotations=mask_annotations,
    )
    _run_batch(inputs, out, options, workers, scheduler)


@app.command("explain")
@_expected_errors
def explain_command(
    model: Annotated[str, typer.Argument(help="'builtin' or a model folder.")],
    image: Annotated[Path, typer.Argument(help="Micrograph file.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNGs.")],
    layers: Annotated[
        list[str] | None,
        typer.Option(
            help="Layers to show (repeat or separate with commas) [default: encoder.0.conv, "
            "decoder.0.concat: an early convolution and the first concatenation]."
        ),
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option(help="Pixel size in nm (default: the file's).")
    ] = None,
    crop: Annotated[int, typer.Option(help="Side of the centred crop explained, px.")] = 512,
) -> None:
    """Activation maps of U-Net layers and the probability map, one PNG each."""
    from nanoseg.explain import explain

    names = None if not layers else [n.strip() for item in layers for n in item.split(",")]
    result = explain(model, image, out, layers=names, pixel_size=pixel_size, crop=crop)
    typer.echo(f"{image}: {result['where']}")
    for name, path in result["files"].items():
        shape = result["shapes"].get(name)
        what = f" ({shape[0]} maps of {shape[2]}x{shape[1]} px)" if shape else ""
        typer.echo(f"{name}{what}: {path}")


@app.command("experiment")
@_expected_errors
def experiment_command(
    out: Annotated[Path, typer.Option(help="Folder for everything (a run there is continued).")],
    quick: Annotated[
        bool, typer.Option(help="Tiny settings that run in a few minutes (a smoke test).")
    ] = False,
    workers: Annotated[int, typer.Option(help="Simulation worker processes.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """The paper's study on simulated data: Au, CdSe and Au+CdSe networks and Bragg filtering."""
    from nanoseg.experiment import run_experiment

    result = run_experiment(
        out, quick=quick, workers=workers, seed=seed, progress=lambda line: typer.echo(line)
    )
    typer.echo(f"results: {result['files']['results_md']} and {result['files']['results_csv']}")
    typer.echo(f"figures: {result['files']['confusion']}, {out / 'overlays'}")


def main() -> None:
    """Entry point of the ``nanoseg`` command."""
    app(prog_name="nanoseg")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
