"""Real multi-modal datasets: the shipped UCI Multiple Features and a generic ``.npz`` format.

Generic ``.npz`` layout (how users bring other data):

- ``x_<name>``: one float array per modality, ``(n, d)``, or ``(n, T, d)`` for sequences
  (by default mean-pooled over T before fusion; ``pool="none"``, or per modality
  ``pool={"text": "none"}``, keeps them for the ``conv`` temporal encoder); the modality
  order is the order in the file;
- ``y``: ``(n,)`` integer class ids >= 0 (or float targets for regression);
- ``split`` (optional): ``(n,)`` with 0 / ``"train"`` for training rows and 1 / ``"test"``
  for test rows; without it, a stratified 75/25 split with a fixed seed is made.

Non-finite feature values are a known defect of some exports (audio features with -inf):
they are replaced by 0 and counted in ``Loaded.cleaned``. Anything else malformed raises
:class:`~mmtheory.errors.DataFormatError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from mmtheory.core.data import MultiModalData
from mmtheory.core.seeding import as_generator
from mmtheory.errors import DataFormatError

__all__ = [
    "Loaded",
    "load_npz",
    "load_mfeat",
    "arrays_to_splits",
    "pool_per_modality",
    "POOLS",
    "MFEAT_CITATION",
    "pooled",
]

MFEAT_CITATION = (
    "R. Duin, Multiple Features, UCI Machine Learning Repository (1998), "
    "DOI 10.24432/C5HC70, CC BY 4.0"
)


@dataclass
class Loaded:
    """A real dataset: train and test splits, and what loading had to clean."""

    name: str
    train: MultiModalData
    test: MultiModalData
    cleaned: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _clean(name: str, x: np.ndarray, cleaned: dict[str, int]) -> np.ndarray:
    bad = ~np.isfinite(x)
    if bad.any():
        cleaned[name] = int(bad.sum())
        x = np.where(bad, 0.0, x)
    return x


POOLS = ("mean", "none")


def pool_per_modality(pool: str | dict[str, str], names) -> dict[str, str]:
    """``pool`` ("mean", "none", or a dict modality -> either; unnamed modalities "mean") as
    a full dict, checked against the modality names."""
    if isinstance(pool, str):
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS} or a dict of them, got {pool!r}")
        return dict.fromkeys(names, pool)
    if not isinstance(pool, dict):
        raise TypeError(f"pool must be a string or a dict, got {type(pool).__name__}")
    unknown = sorted(set(pool) - set(names))
    if unknown:
        raise ValueError(f"pool names modality {unknown[0]!r}; the modalities are {list(names)}")
    bad = {k: v for k, v in pool.items() if v not in POOLS}
    if bad:
        k = next(iter(bad))
        raise ValueError(f"pool[{k!r}] must be one of {POOLS}, got {bad[k]!r}")
    return {k: pool.get(k, "mean") for k in names}


def _pool(x: np.ndarray, pool: str) -> np.ndarray:
    if x.ndim == 2 or pool == "none":
        return x
    return x.mean(axis=1)


def arrays_to_splits(
    name: str,
    x: dict[str, np.ndarray],
    y: np.ndarray,
    is_test: np.ndarray,
    *,
    path: str,
    standardize: bool = True,
    pool: str | dict[str, str] = "mean",
    cleaned: dict[str, int] | None = None,
    split_from_file: bool = True,
) -> Loaded:
    """Validated, cleaned, pooled and (optionally) standardised train/test MultiModalData.

    Sequences kept by ``pool`` are standardised per feature over samples and time steps,
    and the dataset's name records them (``name[sequences: text]``), so that run ids of
    pooled and sequence runs never collide."""
    cleaned = {} if cleaned is None else cleaned
    pools = pool_per_modality(pool, list(x))
    n = len(y)
    if is_test.sum() == 0 or (~is_test).sum() == 0:
        which = "test" if is_test.sum() == 0 else "train"
        source = (
            "key 'split'"
            if split_from_file
            else f"no key 'split', and the 75/25 split made from {n} rows"
        )
        raise DataFormatError(f"{path}: {source}: the {which} split is empty")
    if np.issubdtype(y.dtype, np.integer) and len(np.unique(y[~is_test])) < 2:
        raise DataFormatError(
            f"{path}: key 'y': classification needs at least 2 classes in the train split, "
            f"got {sorted(np.unique(y[~is_test]).tolist())}"
        )
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataFormatError(
            f"{path}: key 'y' must be finite, got {int((~np.isfinite(y)).sum())} non-finite"
        )
    feats = {}
    for k, v in x.items():
        if v.shape[0] != n:
            raise DataFormatError(f"{path}: key 'x_{k}' has {v.shape[0]} rows but 'y' has {n}")
        if np.iscomplexobj(v) or not np.issubdtype(v.dtype, np.number):
            raise DataFormatError(f"{path}: key 'x_{k}' must be real numbers, got {v.dtype}")
        if v.size and not np.isfinite(v).any():
            raise DataFormatError(
                f"{path}: key 'x_{k}': every value is non-finite (NaN or inf); nothing to learn"
            )
        feats[k] = _pool(_clean(k, v.astype(np.float64), cleaned), pools[k])
    if standardize:
        for k, v in feats.items():
            axes = (0, 1) if v.ndim == 3 else 0
            mu = v[~is_test].mean(axis=axes)
            sd = v[~is_test].std(axis=axes)
            feats[k] = (v - mu) / np.where(sd > 0, sd, 1.0)
    sequences = [k for k, v in feats.items() if v.ndim == 3]
    if sequences:
        name = f"{name}[sequences: {','.join(sequences)}]"
    classes = None
    if np.issubdtype(y.dtype, np.integer):
        classes = int(y.max()) + 1
    tr = {k: v[~is_test] for k, v in feats.items()}
    te = {k: v[is_test] for k, v in feats.items()}
    kw = {"n_classes": classes} if classes is not None else {}
    return Loaded(
        name, MultiModalData(tr, y[~is_test], **kw), MultiModalData(te, y[is_test], **kw), cleaned
    )


def _member(archive, key: str, path: Path) -> np.ndarray:
    """One array of an open .npz archive; a member that is not a readable array is a
    DataFormatError naming the file and the key."""
    try:
        value = archive[key]
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise DataFormatError(f"{path}: key {key!r} is not a readable array ({err})") from None
    if not isinstance(value, np.ndarray):
        raise DataFormatError(f"{path}: key {key!r} is not a .npy array")
    return value


def _random_test_mask(n: int, fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    rng = as_generator(seed, "split")
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: max(1, int(round(fraction * n)))]] = True
    return mask


def _stratified_test_mask(y: np.ndarray, fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """A test mask of ``fraction`` of every class (integer ``y``; a class of one row stays
    in training) or of all rows at random (float ``y``, regression)."""
    rng = as_generator(seed, "split")
    mask = np.zeros(len(y), dtype=bool)
    groups = (
        [np.flatnonzero(y == c) for c in np.unique(y)]
        if np.issubdtype(y.dtype, np.integer)
        else [np.arange(len(y))]
    )
    for idx in groups:
        if len(idx) < 2:
            continue
        rng.shuffle(idx)
        mask[idx[: min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))]] = True
    return mask


def load_npz(
    path: str | Path, *, standardize: bool = True, pool: str | dict[str, str] = "mean"
) -> Loaded:
    """Load the generic ``.npz`` layout (module docstring). ``pool``: "mean" (pool every
    sequence over time), "none" (keep sequences), or a dict modality -> either."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a directory, expected a .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        reason = "a pickle or other non-npz file" if "pickle" in str(err) else err
        raise DataFormatError(f"{path}: not a readable .npz archive ({reason})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFormatError(f"{path}: not a .npz archive (a single .npy array)")
    with archive:
        keys = list(archive.files)
        if "y" not in keys:
            raise DataFormatError(f"{path}: missing key 'y' (labels); keys present: {keys}")
        mods = [k for k in keys if k.startswith("x_")]
        if not mods:
            raise DataFormatError(
                f"{path}: no modality arrays: expected keys 'x_<name>', got {keys}"
            )
        unknown = [k for k in keys if k not in mods and k not in ("y", "split")]
        if unknown:
            raise DataFormatError(
                f"{path}: unknown key {unknown[0]!r}; expected 'x_<name>', 'y', 'split'"
            )
        y = _member(archive, "y", path)
        if y.ndim != 1:
            raise DataFormatError(f"{path}: key 'y' must have shape (n,), got {y.shape}")
        if np.issubdtype(y.dtype, np.integer):
            if len(y) and y.min() < 0:
                raise DataFormatError(
                    f"{path}: key 'y': class ids must be >= 0, got {int(y.min())}"
                )
        elif not np.issubdtype(y.dtype, np.floating):
            raise DataFormatError(f"{path}: key 'y' must hold integers or floats, got {y.dtype}")
        x = {}
        for k in mods:
            v = _member(archive, k, path)
            if v.ndim not in (2, 3) or not np.issubdtype(v.dtype, np.number) or np.iscomplexobj(v):
                raise DataFormatError(
                    f"{path}: key {k!r} must be a numeric (n, d) or (n, T, d) array of real "
                    f"numbers, got shape {v.shape} and dtype {v.dtype}"
                )
            if 0 in v.shape[1:]:
                raise DataFormatError(
                    f"{path}: key {k!r} has an empty feature or time axis: shape {v.shape}"
                )
            x[k[2:]] = v
        if "split" in keys:
            split = _member(archive, "split", path)
            if split.shape != y.shape:
                raise DataFormatError(
                    f"{path}: key 'split' has shape {split.shape}, expected {y.shape}"
                )
            if split.dtype.kind in "US":
                if not set(np.unique(split)) <= {"train", "test"}:
                    raise DataFormatError(
                        f"{path}: key 'split' must hold 'train'/'test', got "
                        f"{sorted(set(np.unique(split)))[:5]}"
                    )
                is_test = split == "test"
            else:
                if not set(np.unique(split).tolist()) <= {0, 1}:
                    raise DataFormatError(f"{path}: key 'split' must hold 0 (train) or 1 (test)")
                is_test = split == 1
        elif np.issubdtype(y.dtype, np.integer):
            is_test = _stratified_test_mask(y)
        else:  # regression: a random 75/25 split
            is_test = _random_test_mask(len(y))
    return arrays_to_splits(
        path.stem,
        x,
        y,
        is_test,
        path=str(path),
        standardize=standardize,
        pool=pool,
        split_from_file="split" in keys,
    )


def load_mfeat(*, standardize: bool = True) -> Loaded:
    """UCI Multiple Features, shipped with mmtheory: 2,000 digits, six views, 10 classes.

    Fixed split: the first 150 rows of each digit train, the last 50 test (the file is
    ordered by digit). Features standardised with training statistics.
    """
    with resources.files(__package__).joinpath("mfeat.npz").open("rb") as fh:
        archive = np.load(fh)
        x = {k[2:]: archive[k] for k in archive.files if k.startswith("x_")}
        y = archive["y"]
    is_test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        is_test[idx[150:]] = True
    loaded = arrays_to_splits("mfeat", x, y, is_test, path="mfeat.npz", standardize=standardize)
    loaded.notes.append(MFEAT_CITATION)
    return loaded


def pooled(loaded: Loaded) -> MultiModalData:
    """All rows of ``loaded`` (training then test) as one MultiModalData, for protocols that
    draw their own repeated splits (``experiments.protocol``). Features keep the loader's
    standardisation; the protocol re-standardises inside every split with its training
    rows only (an affine map, so the result is as if the raw features had been used)."""
    tr, te = loaded.train, loaded.test
    x = {k: np.concatenate([tr[k].cpu().numpy(), te[k].cpu().numpy()]) for k in tr.names}
    y = np.concatenate([tr.y.cpu().numpy(), te.y.cpu().numpy()])
    kw = {"n_classes": tr.n_classes} if tr.task == "classification" else {}
    return MultiModalData(x, y, **kw)
