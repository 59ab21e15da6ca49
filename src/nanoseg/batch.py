"""Segment many micrographs: inputs, resuming, errors per file, and Dask for scale.

Each micrograph is one task. A task reads its file, segments it, writes its four outputs and
last a record ``log/<stem>.json`` (the settings, the input's size and modification time, and
the summary row). A run that is started again skips micrographs whose record matches, so a
killed run continues where it stopped; a file that fails is recorded as an error in
``summary.csv`` and in ``log/segment.log`` and the others go on.

With ``workers`` > 1 the tasks run on a local Dask cluster; with ``scheduler`` on an existing
Dask distributed cluster (its workers must see the input and output folders and the model,
e.g. on the shared file system of an HPC cluster). Each worker process loads the model once.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nanoseg.baselines import ThresholdSegmenter
from nanoseg.bragg import BraggSegmenter
from nanoseg.errors import NanosegError
from nanoseg.io import READ_EXTENSIONS, check_output_dir, json_ready, write_csv, write_json
from nanoseg.segment import (
    BUILTIN,
    DEFAULT_MIN_RELATIVE_DIAMETER,
    Segmenter,
    builtin_model_path,
    output_paths,
    write_outputs,
)

__all__ = [
    "BatchOptions",
    "expand_inputs",
    "load_segmenter",
    "segment_batch",
    "unique_stems",
]

LOG_DIR = "log"


@dataclass(frozen=True)
class BatchOptions:
    """How to segment every micrograph of a run (plain values, so Dask can ship them)."""

    model: str = BUILTIN
    pixel_size: float | str | None = None  # nm, or "auto"
    tta: str = "none"
    threshold: float | None = None
    min_area_nm2: float | None = None
    min_relative_diameter: float = DEFAULT_MIN_RELATIVE_DIAMETER
    tile: int = 2048
    overlap: int = 32
    precision: str = "auto"  # network arithmetic: auto, float32 or bfloat16
    device: str = "auto"  # where the network runs: auto, cpu, cuda or cuda:N
    edge: str = "contrast"  # particle outlines: half-contrast edge, or the network's own
    edge_level: float = 0.5
    threads: int = 0  # torch threads per task; 0 = leave torch's default
    mask_annotations: bool = True  # leave out scale bars and text burned into exports
    # method "unet" runs the model; "threshold" the classical baseline with the options below;
    # "bragg" Bragg-peak filtering (nanoseg.bragg, its default settings).
    method: str = "unet"
    threshold_method: str = "otsu"
    sigma: float | str = 2.0  # px, or "auto"
    background: float | None = None
    polarity: str = "dark"


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files named by `inputs`: files as given, folders' micrograph files, glob patterns.

    Parameters
    ----------
    inputs : sequence of str or os.PathLike
        Files, folders (their files with a readable extension, not recursive) or glob patterns
        (``**`` recurses).

    Returns
    -------
    list of pathlib.Path
        In the order given, folder and glob matches sorted, duplicates removed.

    Raises
    ------
    NanosegError
        An input that is neither an existing file or folder nor a pattern matching something.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in READ_EXTENSIONS
            )
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(str(item)):
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                raise NanosegError(f"{item}: no file matches this pattern")
            found += files
        else:
            raise NanosegError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise NanosegError("no micrograph files in " + ", ".join(map(str, inputs)))
    return unique


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output name stems: the file stem, with ``-2``, ``-3``... when two files share one."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        stems.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return stems


@lru_cache(maxsize=2)
def load_segmenter(options: BatchOptions) -> Segmenter | ThresholdSegmenter | BraggSegmenter:
    """The segmenter `options` describe, loaded once per process and kept (a Dask worker
    keeps it between tasks; a caller asking again gets the same object).

    Dask workers keep glibc's default of handing freed memory back, as Dask configures them:
    the nanny pauses a worker whose memory stays high, so one that kept the high-water mark of
    its largest micrograph (:func:`nanoseg.runtime.keep_freed_memory`) could stay paused."""
    if options.method == "bragg":
        return BraggSegmenter(
            min_area_nm2=options.min_area_nm2, mask_annotations=options.mask_annotations
        )
    if options.method == "threshold":
        return ThresholdSegmenter(
            options.threshold_method,
            options.sigma,
            options.background,
            options.polarity,
            options.min_area_nm2,
            options.mask_annotations,
        )
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    return Segmenter.load(
        options.model,
        tta=options.tta,
        threshold=options.threshold,
        min_area_nm2=options.min_area_nm2,
        min_relative_diameter=options.min_relative_diameter,
        tile=options.tile,
        overlap=options.overlap,
        precision=options.precision,
        device=options.device,
        edge=options.edge,
        edge_level=options.edge_level,
        mask_annotations=options.mask_annotations,
    )


def _input_key(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"file": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _record_path(out_dir: Path, stem: str) -> Path:
    return out_dir / LOG_DIR / f"{stem}.json"


def _finished(out_dir: Path, stem: str, path: Path, settings: dict[str, Any]) -> dict | None:
    """The summary row of a micrograph already done with these settings, else None."""
    try:
        record = json.loads(_record_path(out_dir, stem).read_text(encoding="utf-8"))
        key = _input_key(path)
    except (OSError, ValueError):
        return None
    outputs = output_paths(out_dir, stem).values()
    if (
        record.get("status") == "ok"
        and record.get("input") == key
        and record.get("settings") == json_ready(settings)
        and all(p.exists() for p in outputs)
    ):
        return record["row"]
    return None


def segment_file(path: str, stem: str, out_dir: str, options: BatchOptions) -> dict[str, Any]:
    """Segment one file and write its outputs and record; never raises for a bad file.

    Returns
    -------
    dict
        The summary row (``status`` is ``"ok"`` or ``"error"``, with ``error`` the reason).
    """
    import warnings

    source, folder = Path(path), Path(out_dir)
    start = time.perf_counter()
    row: dict[str, Any] = {"file": str(source), "stem": stem}
    try:
        segmenter = load_segmenter(options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the run reports missing pixel sizes itself
            result = segmenter(source, pixel_size=options.pixel_size)
        write_outputs(result, folder, stem)
        row.update(status="ok", error="", **result.summary())
    except NanosegError as error:
        row.update(status="error", error=str(error).replace("\n", " "))
    except (OSError, ValueError, MemoryError) as error:
        row.update(status="error", error=f"{source}: {type(error).__name__}: {error}")
    row["seconds"] = round(time.perf_counter() - start, 3)
    if row["status"] == "ok":
        record = {
            "status": "ok",
            "input": _input_key(source),
            "settings": json_ready(load_segmenter(options).settings),  # cached: no reload
            "row": json_ready(row),
        }
        write_json(_record_path(folder, stem), record)
    return row


SUMMARY_COLUMNS = [
    "file",
    "stem",
    "status",
    "error",
    "width_px",
    "height_px",
    "pixel_size_nm",
    "pixel_size_source",
    "scale_factor",
    "scale_estimate_px",
    "scale_method",
    "threshold",
    "annotation_px",
    "n_particles",
    "n_interior",
    "particle_fraction",
    "mean_diameter_nm",
    "median_diameter_nm",
    "std_diameter_nm",
    "mean_diameter_px",
    "median_diameter_px",
    "std_diameter_px",
    "seconds",
]


def _run_tasks(
    tasks: list[tuple[str, str]],
    out_dir: Path,
    options: BatchOptions,
    workers: int,
    scheduler: str | None,
) -> Iterator[dict[str, Any]]:
    """Rows of `tasks` (path, stem) as they finish: in this process, or on a Dask cluster."""
    if not tasks:
        return
    if scheduler is None and workers <= 1:
        for path, stem in tasks:
            yield segment_file(path, stem, str(out_dir), options)
        return
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler is not None:
        client = Client(scheduler)
        cluster = None
    else:
        # Processes, one thread each: the network uses the cores, not the Python threads.
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        options = dataclasses.replace(options, threads=options.threads or 1)
    try:
        futures = [
            client.submit(segment_file, path, stem, str(out_dir), options, key=f"segment-{stem}")
            for path, stem in tasks
        ]
        for future in as_completed(futures):
            yield future.result()
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def segment_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: BatchOptions | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Segment every micrograph named by `inputs` into the folder `out`.

    Parameters
    ----------
    inputs : sequence of str or os.PathLike
        Files, folders or glob patterns (:func:`expand_inputs`).
    out : str or os.PathLike
        Output folder (created; must be writable).
    options : BatchOptions, optional
    workers : int
        Local worker processes (Dask ``LocalCluster``) when > 1.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); overrides `workers`.
    progress : callable, optional
        ``progress(done, total, row)`` after each micrograph (skipped ones included).

    Returns
    -------
    dict
        ``summary`` (path of summary.csv), ``histogram``, ``log``, counts ``done``,
        ``skipped``, ``failed``, and ``rows``.
    """
    options = options or BatchOptions()
    paths = expand_inputs(inputs)
    model_path = builtin_model_path() if options.model == BUILTIN else Path(options.model)
    if options.method == "unet" and not model_path.exists():
        raise NanosegError(f"{model_path}: no such model")
    # The model and options are checked before anything is written: bad ones leave no folder.
    settings = load_segmenter(options).settings
    out_dir = check_output_dir(out, paths)
    (out_dir / LOG_DIR).mkdir(exist_ok=True)
    logger = _file_logger(out_dir / LOG_DIR / "segment.log")
    stems = unique_stems(paths)
    rows: dict[str, dict[str, Any]] = {}
    tasks = []
    for path, stem in zip(paths, stems, strict=True):
        row = _finished(out_dir, stem, path, settings)
        if row is not None:
            rows[stem] = row
        else:
            tasks.append((str(path), stem))
    logger.info("run: %d files, %d already done, options %s", len(paths), len(rows), options)
    done = len(rows)
    if progress is not None and done:
        progress(done, len(paths), {})
    for row in _run_tasks(tasks, out_dir, options, workers, scheduler):
        rows[row["stem"]] = row
        done += 1
        if row["status"] == "ok":
            logger.info(
                "%s: %d particles (%.1f s)%s",
                row["file"],
                row["n_particles"],
                row["seconds"],
                f"; {row['annotation_px']} px of burned-in scale bar or text left out"
                if row.get("annotation_px")
                else "",
            )
        else:
            logger.error("%s", row["error"])
        if progress is not None:
            progress(done, len(paths), row)
    ordered = [rows[stem] for stem in stems]
    missing_scale = sum(r.get("pixel_size_source") == "unknown" for r in ordered)
    if missing_scale:
        logger.warning(
            "%d micrograph(s) had no pixel size: segmented at their own scale", missing_scale
        )
    summary = write_csv(out_dir / "summary.csv", ordered, SUMMARY_COLUMNS)
    histogram = _histogram(out_dir, ordered)
    _close(logger)
    failed = sum(r["status"] != "ok" for r in ordered)
    return {
        "summary": summary,
        "histogram": histogram,
        "log": out_dir / LOG_DIR / "segment.log",
        "done": len(tasks),
        "skipped": len(paths) - len(tasks),
        "failed": failed,
        "missing_pixel_size": missing_scale,
        "rows": ordered,
    }


def _histogram(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Size histogram of the interior particles of every segmented micrograph."""
    import pandas as pd

    from nanoseg.report import size_histogram_figure

    ok = [r for r in rows if r["status"] == "ok"]
    in_nm = bool(ok) and all(r.get("pixel_size_nm") not in (None, "") for r in ok)
    values = []
    for row in ok:
        table = pd.read_csv(output_paths(out_dir, row["stem"])["particles"])
        if len(table) == 0:
            continue
        table = table[~table["touches_border"].astype(bool)]
        if in_nm:
            values.append(table["equivalent_diameter_nm"].to_numpy(float))
        else:
            values.append(2 * np.sqrt(table["area_px"].to_numpy(float) / np.pi))
    diameters = np.concatenate(values) if values else np.zeros(0)
    title = f"{len(diameters)} particles in {len(ok)} micrographs (border particles left out)"
    return size_histogram_figure(
        diameters, "nm" if in_nm else "px", out_dir / "size_histogram.png", title=title
    )


def _file_logger(path: Path) -> logging.Logger:
    logger = logging.getLogger(f"nanoseg.batch.{path}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


def _close(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
