"""The PyTorch registration backend: it recovers a known transform, honours the mask, is bit-exact on the CPU,
is chosen by the setting / `--registration` / NSTAGE_REGISTRATION, and maps stations as Elastix does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nstage import paths
from nstage.geometry import Grid
from nstage.stationmap.registration_settings import load_settings, resolve_backend
from nstage.stationmap.registration_torch import TorchSettings, padded_shape, run_torch

pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")  # ITK SWIG

WINDOW = (0.0, 1.0)
# tiny problems: 2 levels, few iterations (2 CPU cores)
FAST = TorchSettings(device="cpu", threads=1, levels=2, metric="lncc", lncc_window=5, affine_iterations=(40, 20),
                     affine_step_mm=1.0, affine_step_linear=0.005, bspline_iterations=(40, 30), bspline_step_mm=0.5,
                     final_grid_spacing_mm=16.0, bending_weight=0.002)


def _grid(n: int = 32, spacing: float = 4.0) -> Grid:
    return Grid((n, n, n), (spacing,) * 3, (-spacing * (n - 1) / 2,) * 3)


def _points(grid: Grid) -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in grid.shape), indexing="ij")
    return grid.index_to_lps(np.stack([i, j, k], axis=-1))


def _phantom(p: np.ndarray, extra: tuple[float, float, float] | None = None) -> np.ndarray:
    """A smooth volume (blobs of several sizes and contrasts) at LPS points `p` (..., 3); `extra`: one more blob there."""
    blobs = [((0, 0, 0), 30, 0.6), ((22, -10, 8), 10, 0.9), ((-20, 12, -6), 12, 0.8), ((8, 24, -20), 9, 0.7),
             ((-14, -22, 18), 8, 1.0), ((18, 16, 24), 7, 0.5), ((-24, -6, -26), 9, 0.9), ((4, -26, -14), 8, 0.6)]
    if extra is not None:
        blobs.append((extra, 8, 1.0))
    out = np.zeros(p.shape[:-1])
    for centre, radius, value in blobs:
        out += value * np.exp(-np.sum((p - np.asarray(centre, float)) ** 2, axis=-1) / (2 * radius**2))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _true_map(p: np.ndarray) -> np.ndarray:
    """phi(x) = A (x + u(x)) + t: a small affine (3 deg, 4 % scale, 4 mm shift) and a smooth 4 mm bump."""
    a = np.deg2rad(3.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    matrix = rot @ np.diag([1.04, 0.97, 1.02])
    u = np.zeros_like(p)
    u[..., 0] = 4.0 * np.exp(-np.sum((p - np.array([10.0, 0, 0])) ** 2, axis=-1) / (2 * 25.0**2))
    u[..., 2] = -3.0 * np.exp(-np.sum((p - np.array([-10.0, 10, 0])) ** 2, axis=-1) / (2 * 25.0**2))
    return (p + u) @ matrix.T + np.array([4.0, -3.0, 2.0])


def _inverse(p: np.ndarray) -> np.ndarray:
    """phi^-1 at points `p` (fixed-point iteration; u is small and smooth)."""
    x = p.copy()
    for _ in range(30):
        x = x - (_true_map(x) - p)
    return x


def test_padded_shape_nests_the_levels() -> None:
    assert padded_shape((120, 63, 102), 3) == (121, 65, 105)
    assert padded_shape((33, 33, 33), 2) == (33, 33, 33) and padded_shape((5, 9, 17), 3) == (9, 9, 17)


def test_recovers_a_known_affine_and_smooth_deformation() -> None:
    grid = _grid()
    p = _points(grid)
    fixed = _phantom(p)
    moving = _phantom(_inverse(p))  # moving(phi(x)) = fixed(x)
    mask = np.linalg.norm(p, axis=-1) < 50.0
    disp = run_torch(fixed, moving, grid, mask, FAST, WINDOW)
    assert disp.shape == grid.shape + (3,) and disp.dtype == np.float64
    inner = np.linalg.norm(p, axis=-1) < 40.0
    before = np.linalg.norm(_true_map(p) - p, axis=-1)[inner]
    after = np.linalg.norm(p + disp - _true_map(p), axis=-1)[inner]
    assert np.mean(after) < 0.25 * np.mean(before) and np.mean(after) < 1.5, (np.mean(before), np.mean(after))


def test_the_mask_is_honoured() -> None:
    """A blob that moved only outside the mask pulls the registration with a full mask, not inside the mask."""
    grid = _grid()
    p = _points(grid)
    fixed = _phantom(p, extra=(40.0, 40.0, 0.0))
    moving = _phantom(p, extra=(48.0, 40.0, 0.0))  # the extra blob 8 mm further left, the rest identical
    inside = np.linalg.norm(p, axis=-1) < 35.0
    masked = run_torch(fixed, moving, grid, inside, FAST, WINDOW)
    full = run_torch(fixed, moving, grid, np.ones(grid.shape, bool), FAST, WINDOW)
    moved_masked = np.linalg.norm(masked[inside], axis=-1)
    moved_full = np.linalg.norm(full[inside], axis=-1)
    assert np.percentile(moved_masked, 95) < 0.5 and moved_masked.max() < 1.5  # identical inside the mask: (almost) no motion
    assert np.percentile(moved_full, 95) > 3.0  # with the whole grid the moved blob drags the transform


@pytest.mark.parametrize("metric", ["lncc", "mi"])
def test_cpu_runs_are_bit_exact_for_a_seed(metric: str) -> None:
    grid = _grid(24)
    p = _points(grid)
    fixed, moving = _phantom(p), _phantom(_inverse(p))
    mask = np.linalg.norm(p, axis=-1) < 40.0
    s = replace(FAST, metric=metric, mi_samples=3000, affine_iterations=(15, 5), bspline_iterations=(15, 5))
    first = run_torch(fixed, moving, grid, mask, s, WINDOW)
    second = run_torch(fixed, moving, grid, mask, s, WINDOW)
    assert np.array_equal(first, second)
    if metric == "mi":  # the seed drives the metric's random sample
        assert not np.array_equal(first, run_torch(fixed, moving, grid, mask, replace(s, seed=1), WINDOW))


def test_the_process_torch_settings_are_restored() -> None:
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    grid = _grid(24)
    p = _points(grid)
    run_torch(_phantom(p), _phantom(p), grid, np.ones(grid.shape, bool), replace(FAST, threads=1, affine_iterations=(2, 1),
                                                                            bspline_iterations=(2, 1)), WINDOW)
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det


def test_settings_name_the_backend_and_auto_takes_elastix_without_cuda(monkeypatch) -> None:
    import torch

    s = load_settings()
    assert s.backend == "elastix"  # the CPU default
    assert s.torch.metric in ("lncc", "ncc", "mi") and len(s.torch.bspline_iterations) == s.torch.levels
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend("auto") == "elastix"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend("auto") == "torch"
    assert resolve_backend("elastix") == "elastix" and resolve_backend("torch") == "torch"
    with pytest.raises(ValueError):
        resolve_backend("gpu")


def test_the_command_line_and_the_app_environment_choose_the_backend() -> None:
    from nstage.cli import build_parser
    from nstage.commands.run import run_options
    from nstage.errors import InputError
    from nstage.pipeline import RunOptions, check_options

    parser = build_parser()
    args = parser.parse_args(["stations", "ct", "--out", "o", "--registration", "torch"])
    assert args.registration == "torch"
    assert parser.parse_args(["stations", "ct", "--out", "o"]).registration is None  # the setting decides
    args = parser.parse_args(["run", "-i", "s", "-o", "o", "-m", "m", "--registration", "auto"])
    assert run_options(args).registration == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "-i", "s", "-o", "o", "-m", "m", "--registration", "gpu"])
    with pytest.raises(InputError, match="registration backend"):
        check_options(RunOptions(registration="gpu"))



def test_the_app_takes_the_backend_from_nstage_registration() -> None:
    """app.options_from_env reads NSTAGE_REGISTRATION (a subprocess: importing the app wants Holoscan's 32 MB stack)."""
    import subprocess
    import sys

    code = ("import app\nfrom nstage.errors import InputError\n"
            "for env in ({'NSTAGE_REGISTRATION': 'torch'}, {'NSTAGE_REGISTRATION': 'auto'}, {}, {'NSTAGE_REGISTRATION': 'gpu'}):\n"
            "    try:\n        print(app.options_from_env(env).registration)\n"
            "    except InputError:\n        print('error')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.REPO_ROOT, timeout=300)
    assert done.stdout.split() == ["torch", "auto", "None", "error"], done.stderr[-1500:]


@pytest.fixture(scope="module")
def atlases():
    from nstage.stationmap.atlas import load_atlases

    return load_atlases([paths.atlas_dir()])


@pytest.mark.parametrize(("asked", "cuda", "ran"), [("torch", False, "torch"), ("auto", False, "elastix"), ("auto", True, "torch"),
                                                     (None, False, "elastix")])
def test_map_stations_runs_the_chosen_backend_and_records_it(atlases, monkeypatch, asked, cuda, ran) -> None:
    """The atlas CT as the patient, both backends replaced by recorders (no registration, for speed)."""
    import torch

    import nstage.stationmap.registration as registration

    calls: list[str] = []

    def recorder(name: str):
        def run(fixed, moving, grid, mask, folder, settings):
            calls.append(name)
            return np.zeros(grid.shape + (3,))
        return run

    monkeypatch.setattr(registration, "run_elastix", recorder("elastix"))
    monkeypatch.setattr(registration, "run_torch", recorder("torch"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    a = atlases[0]
    g = a.ct_grid  # the atlas CT at 4 mm as the patient (a small grid: fast label transfer)
    patient = Grid(tuple(-(-n // 2) for n in g.shape), tuple(2 * v for v in g.spacing), g.origin, g.direction)
    result = registration.map_stations(np.ascontiguousarray(a.ct[::2, ::2, ::2], np.float32), patient, atlases, backend=asked)
    assert calls == [ran]
    report = result.report()
    assert report["backend"]["name"] == ran and report["backend"]["requested"] == (asked or "elastix")
    assert report["atlases"][0]["backend"] == ran
    if ran == "torch":
        assert report["backend"]["device"] in ("cpu", "cuda") and "hf-deepali" in report["backend"]


def test_refined_coefficients_give_the_same_spline_on_the_finer_level() -> None:
    """The coarse-to-fine step keeps the deformation (deepali's subdivision, checked on the torch installed)."""
    import torch
    from deepali.core import bspline as B

    from nstage.stationmap.registration_torch import control_grid_shape, refine_coefficients

    coarse, fine, strides = (9, 7, 8), (17, 13, 15), (3, 3, 2)
    g = torch.Generator().manual_seed(0)
    c = torch.randn((1, 3) + control_grid_shape(coarse, strides), generator=g)
    kernel = B.cubic_bspline_interpolation_weights(stride=strides)
    u_coarse = B.evaluate_cubic_bspline(c, shape=coarse, kernel=kernel)
    u_fine = B.evaluate_cubic_bspline(refine_coefficients(c, fine, strides), shape=fine, kernel=kernel)
    assert torch.allclose(u_fine[..., ::2, ::2, ::2], u_coarse, atol=1e-5)
