"""The conv temporal encoder: its definition, batched == an nn.Conv1d loop, what it learns
that mean pooling cannot, the sequence world's exact Bayes risk, loaders and the CLI."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import assert_batched_equals_loop

import synthetic
from mmtheory import MultiModalData, sweep
from mmtheory.cli import main, parse_temporal
from mmtheory.core.subsets import all_subsets
from mmtheory.datasets import load_iemocap, load_npz
from mmtheory.experiments import DataSource
from mmtheory.models import (
    Learner,
    ModelPlan,
    forward,
    init_model,
    sliding_windows,
    stack_params,
)
from mmtheory.models.params import ENCODER

CONV = dict(kind="late_fusion", encoder="conv", latent_dim=3, hidden=5, window=3)


def test_sliding_windows_by_hand():
    x = torch.arange(1.0, 9.0).view(1, 1, 4, 2)  # one sequence: steps (1,2), (3,4), (5,6), (7,8)
    win = sliding_windows(x, 3)
    assert win.shape == (1, 1, 2, 6)
    assert win[0, 0].tolist() == [[1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8]]
    short = sliding_windows(torch.tensor([[[1.0, 2.0]]]), 3)  # a vector: length 1, zero-padded
    assert short[0, 0].tolist() == [[1, 2, 0, 0, 0, 0]]


def test_conv_on_a_vector_is_the_mlp_encoder():
    """Zero-padding a length-1 sequence leaves only the first d rows of W1 in play: the
    conv encoder on vectors is the MLP encoder with those rows."""
    world = synthetic.LinearWorld((4, 3), latent_dim=2, task="classification", n_classes=3)
    data = world.sample(20, seed=0)
    subs = all_subsets(world.names)
    plan = ModelPlan(world.names, (4, 3), tuple(subs), 3)
    conv = Learner(**CONV)
    mlp = Learner(**{**CONV, "encoder": "mlp"})
    inits = [
        init_model(conv, s, world.dims, 3, key=("v", str(s)), dtype=torch.float64) for s in subs
    ]
    as_mlp = [
        {
            k: (
                v[: world.dims[k.modality]]
                if k.part == ENCODER and k.layer == 1 and k.weight
                else v
            )
            for k, v in p.items()
        }
        for p in inits
    ]
    xs = [data[k][None].double() for k in world.names]
    a = forward(conv, stack_params([inits], plan, "cpu", torch.float64), xs, plan)
    b = forward(mlp, stack_params([as_mlp], plan, "cpu", torch.float64), xs, plan)
    assert torch.allclose(a, b, atol=1e-14)


def _sequence_setup(learner, G=2, m=30):
    world = synthetic.SequenceWorld(steps=6, channels=2, still_dim=3)
    subs = all_subsets(world.names)
    datas = [world.sample(m, seed=g) for g in range(G)]
    plan = ModelPlan(world.names, tuple(world.dims.values()), tuple(subs), 2)
    inits = [
        [
            init_model(learner, s, world.dims, 2, key=("t", g, str(s)), dtype=torch.float64)
            for s in subs
        ]
        for g in range(G)
    ]
    xs = [torch.stack([d[k] for d in datas]).double() for k in world.names]
    y = torch.stack([d.y for d in datas])
    return world, subs, datas, plan, inits, xs, y


@pytest.mark.parametrize(
    "settings",
    [
        dict(steps=15),
        dict(steps=15, activation="tanh", window=2, batch_size=8),
        dict(steps=10, method="i2m2"),
        dict(steps=10, method="mimo"),
        dict(steps=10, method="bogc"),
    ],
    ids=["erm", "tanh-w2-minibatch", "i2m2", "mimo", "bogc"],
)
def test_batched_conv_equals_a_conv1d_loop(settings):
    """The batched GEMM over windows equals nn.Conv1d models trained one by one (float64,
    identical arithmetic up to summation order: 1e-9 is ~1e6 ulps of slack)."""
    learner = Learner(**{**CONV, "solver": "adam", "lr": 0.05, **settings})
    assert_batched_equals_loop(learner, "classification", *_sequence_setup(learner))


def test_sequence_world_bayes_risk_matches_monte_carlo():
    """The quadrature Bayes risk and error against the true posterior on 200,000 draws:
    within 4 standard errors."""
    world = synthetic.SequenceWorld()
    data = world.sample(200_000, seed=5)
    r = (2 * np.arange(world.steps) - (world.steps - 1)) / (world.steps - 1)
    llr = (
        2 * world.ramp * data["motion"][:, :, 0].numpy() @ r
        + 2 * world.still_signal * data["still"][:, 0].numpy()
    ) / world.noise**2
    sign = 2 * data.y.numpy() - 1
    loss = np.logaddexp(0, -sign * llr)
    err = (sign * llr < 0).astype(float)
    for estimate, exact in ((loss, world.bayes_risk()), (err, world.bayes_error())):
        se = estimate.std() / np.sqrt(len(estimate))
        assert abs(estimate.mean() - exact) < 4 * se, (estimate.mean(), exact, se)
    # the level and the other channels carry nothing: motion alone is the ramp's mu
    assert world.bayes_error("motion") < world.bayes_error("still") < 0.5


def test_conv_learns_what_mean_pooling_cannot():
    """On ``motion`` alone, the class is only in time: a mean-pooled MLP is at chance
    (accuracy 0.5 within 4 SE of 2,000 test rows, +-0.045) while the conv encoder gets
    within 0.08 of the Bayes accuracy (0.90)."""
    world = synthetic.SequenceWorld()
    train = world.sample(600, seed=0)
    test = world.sample(2000, seed=1)

    def pooled(d):
        return MultiModalData(
            {"motion": d["motion"].mean(dim=1), "still": d["still"]}, d.y, n_classes=2
        )

    settings = dict(kind="late_fusion", latent_dim=8, hidden=16, steps=200, lr=0.01)
    conv = sweep(
        DataSource(train, test, name="seq"),
        dict(settings, encoder="conv"),
        ["motion"],
        m=[600],
        seeds=1,
        progress=False,
    )
    mean = sweep(
        DataSource(pooled(train), pooled(test), name="pooled"),
        dict(settings, encoder="mlp"),
        ["motion"],
        m=[600],
        seeds=1,
        progress=False,
    )
    assert abs(mean.test_accuracy.iloc[0] - 0.5) < 4 * np.sqrt(0.25 / 2000)
    assert conv.test_accuracy.iloc[0] > 1 - world.bayes_error("motion") - 0.08


def test_sequences_need_the_conv_encoder():
    world = synthetic.SequenceWorld()
    with pytest.raises(ValueError, match="'motion' is a sequence .* use encoder 'conv'"):
        sweep(
            world,
            {"kind": "late_fusion", "encoder": "mlp", "steps": 2},
            ["motion"],
            m=[10],
            seeds=1,
            progress=False,
            n_test=10,
            n_refit=10,
            n_eval=10,
        )
    with pytest.raises(ValueError, match="encoder 'conv' needs kind 'late_fusion'"):
        Learner(kind="early_fusion", encoder="conv")
    with pytest.raises(ValueError, match="method 'xmodal' .* not 'conv'"):
        Learner(kind="late_fusion", encoder="conv", method="xmodal")
    with pytest.raises(ValueError, match="window must be a positive integer"):
        Learner(kind="late_fusion", encoder="conv", window=0)


def test_window_is_recorded_only_for_conv():
    """Adding ``window`` changed no existing run id: it is in conv learners' settings only."""
    assert "window" not in Learner(kind="late_fusion", encoder="mlp").settings()
    assert Learner(kind="late_fusion", encoder="conv", window=4).settings()["window"] == 4


# ------------------------------------------------------------------ loaders and CLI
def _temporal_arrays(n=400, T=6, seed=0):
    """``motion`` holds the class only in time (+a then -a: its time mean is 0); ``noise``
    is pure noise; ``static`` is a vector."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    pattern = np.where(np.arange(T) < T // 2, 1.0, -1.0)
    motion = rng.standard_normal((n, T, 3))
    motion[:, :, 0] += 2.0 * (2 * y[:, None] - 1) * pattern
    return {
        "x_motion": motion,
        "x_noise": rng.standard_normal((n, T, 2)),
        "x_static": rng.standard_normal((n, 4)),
        "y": y,
    }


def test_npz_keeps_sequences_when_asked(tmp_path):
    path = tmp_path / "seq.npz"
    np.savez(path, **_temporal_arrays())
    pooled = load_npz(path)
    assert pooled.train["motion"].ndim == 2 and pooled.name == "seq"
    kept = load_npz(path, pool="none")
    assert kept.train["motion"].shape[1:] == (6, 3) and kept.train["static"].ndim == 2
    assert kept.name == "seq[sequences: motion,noise]"  # distinct run ids from the pooled runs
    # standardised per feature over samples and time steps
    m = kept.train["motion"].reshape(-1, 3)
    assert torch.allclose(m.mean(0), torch.zeros(3, dtype=m.dtype), atol=1e-12)
    assert torch.allclose(m.std(0, unbiased=False), torch.ones(3, dtype=m.dtype), atol=1e-12)
    mixed = load_npz(path, pool={"motion": "none"})
    assert mixed.train["motion"].ndim == 3 and mixed.train["noise"].ndim == 2
    with pytest.raises(ValueError, match="pool names modality 'text'"):
        load_npz(path, pool={"text": "none"})
    with pytest.raises(ValueError, match=r"pool\['motion'\] must be one of"):
        load_npz(path, pool={"motion": "max"})


def test_parse_temporal():
    assert parse_temporal("mean") == "mean" and parse_temporal("conv") == "none"
    assert parse_temporal("text=conv, audio=mean") == {"text": "none", "audio": "mean"}
    for bad in ("lstm", "text=lstm", "=conv", "text"):
        with pytest.raises(ValueError, match="--temporal must be"):
            parse_temporal(bad)


def test_cli_temporal_conv_finds_what_pooling_misses(tmp_path):
    """End to end: with mean pooling ``motion`` is at chance; with ``--temporal conv`` it
    is the best single modality by a wide margin."""
    path = tmp_path / "seq.npz"
    np.savez(path, **_temporal_arrays())
    for how in ("mean", "conv"):
        assert (
            main(
                [
                    "data",
                    "npz",
                    "--path",
                    str(path),
                    "--temporal",
                    how,
                    "--protocol",
                    "paper",  # both under the paper's protocol (one fixed split, Adam)
                    "--seeds",
                    "2",
                    "--out",
                    str(tmp_path / how),
                ]
            )
            == 0
        )
    single = {}
    for how in ("mean", "conv"):
        res = pd.read_csv(tmp_path / how / "results.csv")
        big = res[(res.m == res.m.max()) & (res.n_modalities == 1)]
        single[how] = big.groupby("subset").test_accuracy.mean()
    # 100 test rows x 2 seeds: SE of a chance accuracy ~0.035; 0.2 is ~6 SE
    assert single["conv"]["motion"] > single["conv"][["noise", "static"]].max() + 0.2
    assert single["mean"]["motion"] < 0.5 + 0.15
    assert "late_fusion-conv" in set(pd.read_csv(tmp_path / "conv" / "results.csv").learner)


def _mult_temporal(n=480, T=6, seed=0):
    """IEMOCAP mult layout; ``text`` holds the emotion in time only (+3 then -3 on the
    emotion's feature), audio and vision are noise."""
    rng = np.random.default_rng(seed)
    pattern = np.where(np.arange(T) < T // 2, 3.0, -3.0)

    def split(k):
        y = rng.integers(0, 4, k)
        labels = np.zeros((k, 4, 2))
        labels[:, :, 0] = 1
        labels[np.arange(k), y, 0], labels[np.arange(k), y, 1] = 0, 1
        text = rng.standard_normal((k, T, 20))
        text[np.arange(k), :, y] += pattern
        return {
            "text": text,
            "audio": rng.standard_normal((k, T, 7)),
            "vision": rng.standard_normal((k, T, 5)),
            "labels": labels,
        }

    return {"train": split(n), "valid": split(n // 4), "test": split(n // 2)}


def test_iemocap_mult_with_a_temporal_encoder(tmp_path, capsys):
    path = tmp_path / "iemocap.pkl"
    path.write_bytes(pickle.dumps(_mult_temporal()))
    loaded = load_iemocap(path, pool={"text": "none"})
    assert loaded.train["text"].ndim == 3 and loaded.train["audio"].ndim == 2
    assert "sequences kept for text" in loaded.notes[0]
    assert (
        main(
            [
                "data",
                "iemocap",
                "--path",
                str(path),
                "--temporal",
                "text=conv",
                "--protocol",
                "paper",
                "--seeds",
                "1",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    res = pd.read_csv(tmp_path / "o" / "results.csv")
    big = res[res.m == res.m.max()].groupby("subset").test_accuracy.mean()
    assert big["text"] > big["audio"] + 0.25  # 4 classes: chance is 0.25
    cer = tmp_path / "cer.pkl"
    cer.write_bytes(pickle.dumps([{}] * 9))
    with pytest.raises(ValueError, match="pool applies to the mult layout"):
        load_iemocap(cer, pool="none")
    assert main(["data", "mfeat", "--temporal", "conv", "--out", str(tmp_path / "m")]) == 2
    assert "mfeat holds vectors" in capsys.readouterr().err


def test_a_spec_runs_the_conv_encoder_on_the_sequence_world(tmp_path):
    """The spec path: world kind ``sequence`` and a conv learner with its window."""
    from mmtheory.experiments import parse_spec, run_spec

    spec = parse_spec(
        {
            "world": {"kind": "sequence", "steps": 5},
            "learner": [
                {
                    "kind": "late_fusion",
                    "encoder": "conv",
                    "window": 2,
                    "latent_dim": 4,
                    "hidden": 8,
                    "steps": 30,
                }
            ],
            "grid": {"subsets": "all", "m": [40], "seeds": 1},
            "estimation": {"n_test": 200, "n_refit": 200, "n_eval": 200},
        }
    )
    table = run_spec(spec, out=str(tmp_path), progress=False)
    assert set(table.learner) == {"late_fusion-conv"} and len(table) == 3
    assert table[["test_risk", "eta"]].notna().all().all()
    assert table.steps.eq(5).all()  # the world's parameters are columns


def test_conv_needs_a_sequence_and_a_refusal_leaves_no_folder(tmp_path, capsys):
    """--temporal conv on a file whose modalities are all vectors is refused in one line
    (it would train conv encoders over one time step), and the output folder the command
    had created is gone again."""
    path = tmp_path / "vectors.npz"
    a = _temporal_arrays(n=60)
    np.savez(path, x_static=a["x_static"], x_other=a["x_static"][:, :2], y=a["y"])
    out = tmp_path / "never"
    argv = ["data", "npz", "--path", str(path), "--temporal", "conv", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sequence modality" in err[0]
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()  # a folder that was there before stays
    assert main([*argv[:-1], str(kept)]) == 2 and kept.is_dir()


def test_a_refusal_after_the_record_store_opened_leaves_no_folder(tmp_path):
    out = tmp_path / "o"
    assert main(["data", "mfeat", "--sizes", "5000", "--out", str(out)]) == 2
    assert not out.exists()
