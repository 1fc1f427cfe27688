"""Where a sweep's samples come from: a synthetic world, or real data with a test split.

A source hands out, per seed, the training sample (sample sizes are nested prefixes),
a test sample, and the refit/evaluation samples used to estimate eta. Only the world
interface is used: mmtheory never reads a world's internals.
"""

from __future__ import annotations

import numpy as np
import torch

from mmtheory.core.data import MultiModalData
from mmtheory.core.seeding import as_generator, derive
from mmtheory.core.validation import check_int
from mmtheory.core.world import world_id_of

__all__ = ["WorldSource", "DataSource", "make_source", "stack_groups"]


class WorldSource:
    """Samples from a world: training data ``world.sample(n, seed)`` (so a user can
    rebuild it), fresh test / refit / evaluation samples from derived streams."""

    def __init__(self, world, *, n_test: int = 10_000, n_refit: int = 10_000, n_eval: int = 10_000):
        for name, v in (("n_test", n_test), ("n_refit", n_refit), ("n_eval", n_eval)):
            check_int(v, name, low=2)
        self.world = world
        self.n_test, self.n_refit, self.n_eval = n_test, n_refit, n_eval
        self.names = tuple(world.names)
        self.dims = dict(world.dims)
        self.task = world.task
        self.name = world.name
        self.identity = world.identity()
        self.world_id = world_id_of(self.identity)
        self.params = dict(world.params())
        self.risk_method = "monte_carlo"
        self.eta_method = "monte_carlo"
        self.max_train = None

    @property
    def out_dim(self) -> int:
        return int(self.world.output_dim)

    @property
    def steps(self) -> dict[str, int]:
        """Time steps per modality (1 for vectors): from one drawn row, once."""
        if not hasattr(self, "_steps"):
            row = self.world.sample(1, seed=0)
            self._steps = {k: int(row[k].shape[1]) if row[k].ndim == 3 else 1 for k in self.names}
        return self._steps

    @property
    def oracle(self):
        """The world's exact linear oracle, or None."""
        return self.world.oracle()

    def bayes_risk(self) -> float:
        return float(self.world.bayes_risk())

    @property
    def bayes_risk_method(self) -> str:
        return str(self.world.bayes_risk_method)

    @property
    def bayes_risk_se(self) -> float:
        return float(self.world.bayes_risk_se)

    def train(self, seed: int, n: int) -> MultiModalData:
        return self.world.sample(n, seed=seed)

    def draw_key(self) -> str | None:
        """The world's ``shared_draw_key()`` (regression worlds that offer one), else None:
        worlds with equal keys share their training latent and features per seed."""
        fn = getattr(self.world, "shared_draw_key", None)
        return fn() if fn is not None and self.task == "regression" else None

    def latent_maps(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The world's ``latent_linear_maps()`` ((T, B): training samples exactly linear in
        their latent, x = T z, y = B z) for regression worlds that offer them, else None."""
        fn = getattr(self.world, "latent_linear_maps", None)
        return fn() if fn is not None and self.task == "regression" else None

    def train_latent(self, seed: int, n: int) -> np.ndarray:
        """The latent of ``train(seed, n)`` (worlds with a ``draw_key``)."""
        return self.world.sample_latent(n, seed=seed)

    def train_from_latent(self, z: np.ndarray, seed: int) -> MultiModalData:
        """``train(seed, n)`` built from its latent ``z``."""
        return self.world.sample_from_latent(z, seed=seed)

    def train_targets(self, z: np.ndarray, seed: int) -> np.ndarray:
        """The targets of ``train(seed, n)`` from its latent ``z``, as (n, ...) floats."""
        return np.ascontiguousarray(self.world.targets_from_latent(z, seed=seed))

    def test(self, seed: int) -> MultiModalData:
        return self.world.sample(self.n_test, seed=derive(seed, "test"))

    def refit(self, seed: int) -> MultiModalData:
        return self.world.sample(self.n_refit, seed=derive(seed, "refit"))

    def evaluation(self, seed: int) -> MultiModalData:
        return self.world.sample(self.n_eval, seed=derive(seed, "eval"))


class DataSource:
    """Real data: a training set (shuffled per seed; sizes are prefixes) and a test split.

    eta is a proxy here: the head is refit on the whole training set and its held-out
    risk reported (the unknown Bayes risk is not subtracted; it cancels in gamma).
    """

    def __init__(self, train: MultiModalData, test: MultiModalData, *, name: str = "data"):
        if not isinstance(train, MultiModalData) or not isinstance(test, MultiModalData):
            raise TypeError("train and test must be MultiModalData")
        if train.names != test.names or train.dims != test.dims:
            raise ValueError(
                f"test split has modalities {test.dims} but training data has {train.dims}"
            )
        if train.task != test.task:
            raise ValueError(f"train task {train.task!r} differs from test task {test.task!r}")
        self.train_data, self.test_data = train, test
        self.names, self.dims, self.task = train.names, dict(train.dims), train.task
        self.name = self.identity = name
        self.world_id = world_id_of(name)
        self.params: dict[str, object] = {}
        self.risk_method = self.eta_method = "holdout"
        self.max_train = train.n
        self.oracle = None
        n_classes = max(train.n_classes or 0, test.n_classes or 0)
        self._out_dim = n_classes if self.task == "classification" else train.output_dim

    def draw_key(self) -> None:
        """Real data shares no draws across sources."""
        return None

    def latent_maps(self) -> None:
        """Real data has no latent."""
        return None

    @property
    def out_dim(self) -> int:
        return self._out_dim

    @property
    def steps(self) -> dict[str, int]:
        """Time steps per modality (1 for vectors)."""
        return {
            k: int(self.train_data[k].shape[1]) if self.train_data[k].ndim == 3 else 1
            for k in self.names
        }

    def bayes_risk(self) -> float:
        """Unknown on real data: 0 is subtracted, so eta is the refit head's held-out risk
        (a proxy whose differences estimate gamma)."""
        return 0.0

    bayes_risk_method = "unknown"
    bayes_risk_se = float("nan")

    def train(self, seed: int, n: int) -> MultiModalData:
        """The first ``n`` rows of a per-seed order. For classification the order is
        class-stratified: each class is shuffled, and the classes are interleaved in
        proportion to their sizes, so every prefix has (nearly) the training split's class
        proportions and a prefix of a few times the number of classes sees every class."""
        if n > self.train_data.n:
            raise ValueError(f"m={n} exceeds the {self.train_data.n} training rows")
        rng = as_generator(seed, "shuffle")
        N = self.train_data.n
        if self.task != "classification":
            return self.train_data.take(rng.permutation(N)[:n])
        y = self.train_data.y.numpy()
        key = np.empty(N)
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            rank = rng.permutation(len(idx))
            key[idx] = (rank + rng.random(len(idx))) / len(idx)
        return self.train_data.take(np.argsort(key, kind="stable")[:n])

    def test(self, seed: int) -> MultiModalData:
        return self.test_data

    def refit(self, seed: int) -> MultiModalData:
        return self.train_data

    def evaluation(self, seed: int) -> MultiModalData:
        return self.test_data


def make_source(obj, *, test: MultiModalData | None = None, **kwargs):
    """A source from a world, or from MultiModalData plus its ``test`` split."""
    if isinstance(obj, WorldSource | DataSource):
        return obj
    if isinstance(obj, MultiModalData):
        if test is None:
            raise ValueError("real data needs a test split: pass test=MultiModalData(...)")
        return DataSource(obj, test, name=kwargs.pop("name", "data"))
    if hasattr(obj, "sample") and hasattr(obj, "bayes_risk"):
        return WorldSource(obj, **kwargs)
    raise TypeError(f"sweep needs a world or MultiModalData, got {type(obj).__name__}")


def stack_groups(datas: list[MultiModalData], names, device, dtype):
    """Stack G datasets of equal size: list over modalities of (G, n, d_k) and y (G, n[, p])."""
    xs = [torch.stack([d[k] for d in datas]).to(device=device, dtype=dtype) for k in names]
    y = torch.stack([d.y for d in datas]).to(device)
    if datas[0].task == "regression":
        y = y.to(dtype)
        if y.ndim == 2:
            y = y[..., None]
    return xs, y
