"""HTAD, the home-tasks activities dataset (audio and wrist accelerometer), read from the
installed ``multiviewstacking`` package (an optional extra: ``pip install
mmtheory[htad]``); nothing of it is copied into this repository.

1,386 rows, 7 activities; view ``audio`` holds the 36 ``v1_*`` features (MFCC statistics),
view ``accelerometer`` the 16 ``v2_*`` features. The data are open for research and
education; cite Garcia-Ceja et al. (MMM 2021, :data:`HTAD_CITATION`).
"""

from __future__ import annotations

import csv
import io
from importlib import resources

import numpy as np

from mmtheory.datasets.loaders import Loaded, _stratified_test_mask, arrays_to_splits
from mmtheory.errors import DataFormatError

__all__ = ["load_htad", "HTAD_CITATION", "HTAD_PACKAGE", "MissingExtraError"]

HTAD_PACKAGE = "multiviewstacking"
HTAD_CITATION = (
    "E. Garcia-Ceja, V. Thambawita, S. A. Hicks, D. Jha, P. Jakobsen, H. L. Hammer, "
    "P. Halvorsen, M. A. Riegler: HTAD: A Home-Tasks Activities Dataset with "
    "Wrist-Accelerometer and Audio Features, MultiMedia Modeling (MMM) 2021, "
    "doi:10.1007/978-3-030-67835-7_17; read from the multiviewstacking package (MIT)"
)
#: column prefix -> view name
VIEWS = {"v1_": "audio", "v2_": "accelerometer"}


class MissingExtraError(ValueError):
    """An optional dependency that a dataset needs is not installed."""


def _read_csv() -> str:
    try:
        root = resources.files(HTAD_PACKAGE)
    except ModuleNotFoundError:
        raise MissingExtraError(
            f"dataset htad needs the optional package {HTAD_PACKAGE!r}, which is not "
            "installed: pip install 'mmtheory[htad]' (or pip install multiviewstacking)"
        ) from None
    path = root.joinpath("data").joinpath("htad.csv")
    if not path.is_file():
        raise DataFormatError(f"package {HTAD_PACKAGE!r} is installed but holds no data/htad.csv")
    return path.read_text(encoding="latin-1")


def load_htad(*, standardize: bool = True) -> Loaded:
    """HTAD as two views (module docstring); a stratified 75/25 split with a fixed seed
    (the real-data protocol draws its own repeated splits from all rows)."""
    rows = list(csv.reader(io.StringIO(_read_csv())))
    header, body = rows[0], rows[1:]
    if "class" not in header:
        raise DataFormatError(f"htad.csv: no 'class' column; columns: {header[:5]}...")
    ci = header.index("class")
    labels = [r[ci] for r in body]
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels], dtype=np.int64)
    values = np.array([[float(v) for j, v in enumerate(r) if j != ci] for r in body])
    cols = [h for j, h in enumerate(header) if j != ci]
    x = {}
    for prefix, view in VIEWS.items():
        idx = [j for j, h in enumerate(cols) if h.startswith(prefix)]
        if not idx:
            raise DataFormatError(f"htad.csv: no columns starting with {prefix!r}")
        x[view] = values[:, idx]
    loaded = arrays_to_splits(
        "htad",
        x,
        y,
        _stratified_test_mask(y),
        path="htad.csv",
        standardize=standardize,
        split_from_file=False,
    )
    loaded.notes.append(HTAD_CITATION)
    loaded.notes.append("classes: " + ", ".join(classes))
    return loaded
