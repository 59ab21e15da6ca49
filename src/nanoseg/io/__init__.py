"""Reading and writing micrographs, label maps, masks, probability maps and tables."""

from nanoseg.io.read import (
    MAX_PIXELS,
    READ_EXTENSIONS,
    Micrograph,
    read_label_map,
    read_micrograph,
    sha256_file,
    unit_to_nm,
)
from nanoseg.io.write import (
    atomic_path,
    check_output_dir,
    json_ready,
    write_csv,
    write_json,
    write_mask,
    write_mrc,
    write_png,
    write_tiff,
)

__all__ = [
    "MAX_PIXELS",
    "READ_EXTENSIONS",
    "Micrograph",
    "atomic_path",
    "check_output_dir",
    "json_ready",
    "read_label_map",
    "read_micrograph",
    "sha256_file",
    "unit_to_nm",
    "write_csv",
    "write_json",
    "write_mask",
    "write_mrc",
    "write_png",
    "write_tiff",
]
