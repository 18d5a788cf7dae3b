"""The PyTorch registration backend: affine, then cubic B-spline free-form deformation, on the CPU or a GPU.

Same interface as :func:`nstage.stationmap.registration.run_elastix`: fixed (patient thorax crop) and
moving (pre-aligned atlas CT) on one working grid, the fixed mask; it returns the displacement field
``[k, j, i, 3]`` in mm (LPS) on that grid, so that ``x + d(x)`` is the moving point of fixed point ``x``.

The transform is explicit in physical space (LPS mm), with the crop's centre ``c``::

    phi(x) = c + (I + M) (x + u(x) - c) + t          u: cubic B-spline FFD, coefficients in mm

- Multi-resolution: Gaussian pyramid of ``levels`` levels (factors 4, 2, 1 for 3 levels, sigma half the
  factor in voxels, like Elastix's smoothing pyramid); the grid is padded at its far end to
  ``2**(levels-1) * n + 1`` points so that every level's points are a subset of the finest ones and the
  control point lattice halves exactly from level to level (spacing ``final_grid_spacing_mm`` times 4, 2, 1).
- Affine stage (``M``, ``t``; Adam, steps in mm and dimensionless), then the B-spline stage with the
  affine fixed (Adam on the coefficients, bending energy of the spline as the penalty).
- Metric: local normalised cross-correlation (``lncc``), global NCC (``ncc``) or Parzen-window mutual
  information (``mi``, on a seeded random sample of the mask), averaged inside the fixed mask only.

From `hf-deepali` (Apache-2.0) it uses the cubic B-spline evaluation, subdivision and bending energy
and the LNCC / NCC / MI losses; the optimisation loop, the parameterisation in mm and the pyramid are here.
Deterministic on the CPU for a fixed seed and thread count (``torch.use_deterministic_algorithms``);
on a GPU the gradients of ``grid_sample`` and ``avg_pool3d`` use atomics, so runs agree only within tolerances.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from nstage.geometry import Grid

METRICS = ("lncc", "ncc", "mi")


@dataclass(frozen=True)
class TorchSettings:
    """The torch backend's block of `config/registration.json` (`torch_backend`)."""

    device: str = "auto"  # auto: cuda when torch sees a GPU, else cpu
    threads: int = 1  # CPU threads; 0: the registration's `threads` (0 there: every core)
    seed: int = 0
    levels: int = 3
    metric: str = "mi"
    lncc_window: int = 5  # voxels of the level
    mi_bins: int = 32
    mi_samples: int = 20000
    affine_iterations: tuple[int, ...] = (80, 50, 0)
    affine_step_mm: float = 1.0
    affine_step_linear: float = 0.004
    bspline_iterations: tuple[int, ...] = (80, 60, 30)
    bspline_step_mm: float = 0.6
    final_grid_spacing_mm: float = 15.0
    bending_weight: float = 0.00005

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> TorchSettings:
        """From the `torch_backend` block (missing keys: the defaults above)."""
        d, a, b = cls(), c.get("affine", {}), c.get("bspline", {})
        s = cls(
            device=str(c.get("device", d.device)), threads=int(c.get("threads", d.threads)), seed=int(c.get("seed", d.seed)),
            levels=int(c.get("levels", d.levels)), metric=str(c.get("metric", d.metric)),
            lncc_window=int(c.get("lncc_window_voxels", d.lncc_window)), mi_bins=int(c.get("mi_bins", d.mi_bins)),
            mi_samples=int(c.get("mi_samples", d.mi_samples)),
            affine_iterations=tuple(int(v) for v in a.get("iterations", d.affine_iterations)),
            affine_step_mm=float(a.get("step_mm", d.affine_step_mm)), affine_step_linear=float(a.get("step_linear", d.affine_step_linear)),
            bspline_iterations=tuple(int(v) for v in b.get("iterations", d.bspline_iterations)),
            bspline_step_mm=float(b.get("step_mm", d.bspline_step_mm)),
            final_grid_spacing_mm=float(b.get("final_grid_spacing_mm", d.final_grid_spacing_mm)),
            bending_weight=float(b.get("bending_weight", d.bending_weight)),
        )
        s.check()
        return s

    def check(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"torch backend metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if self.levels < 1 or len(self.affine_iterations) != self.levels or len(self.bspline_iterations) != self.levels:
            raise ValueError("torch backend: give one affine and one bspline iteration count per level")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"torch backend device {self.device!r}: auto, cpu, cuda or cuda:N")


def torch_device(name: str = "auto") -> str:
    """The device a setting names: ``auto`` is cuda when torch sees a GPU, else cpu."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def library_versions() -> dict[str, str]:
    """torch and hf-deepali versions (for registration.json)."""
    from importlib import metadata

    import torch

    return {"torch": torch.__version__, "hf-deepali": metadata.version("hf-deepali")}


@contextlib.contextmanager
def _torch_state(device: str, threads: int, seed: int) -> Iterator[Any]:
    """Fixed threads, deterministic algorithms (CPU) and a seeded generator; the process's settings restored after."""
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if device == "cpu":
            torch.set_num_threads(max(1, threads))
            torch.use_deterministic_algorithms(True)
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        yield gen
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def padded_shape(shape: tuple[int, int, int], levels: int) -> tuple[int, int, int]:
    """The smallest shape >= `shape` with ``2**(levels-1) * m + 1`` points per axis (m >= 2)."""
    f = 2 ** (levels - 1)
    return tuple(max(2, math.ceil((n - 1) / f)) * f + 1 for n in shape)  # type: ignore[return-value]


def run_torch(fixed: np.ndarray, moving: np.ndarray, grid: Grid, mask: np.ndarray, settings: TorchSettings,
              window: tuple[float, float], threads: int = 0) -> np.ndarray:
    """Register `moving` to `fixed` (both ``[k, j, i]`` on `grid`, HU clipped to `window`) inside `mask`.

    Returns the displacement field ``[k, j, i, 3]`` (mm, LPS, float64) on `grid`.
    """
    settings.check()
    device = torch_device(settings.device)
    n_threads = settings.threads or threads or (os.cpu_count() or 1)
    with _torch_state(device, n_threads, settings.seed) as gen:
        return _register(fixed, moving, grid, mask, settings, window, device, gen)


def _register(fixed: np.ndarray, moving: np.ndarray, grid: Grid, mask: np.ndarray, s: TorchSettings,
              window: tuple[float, float], device: str, gen: Any) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    from deepali.core import bspline as B

    shape = tuple(grid.shape)
    full = padded_shape(shape, s.levels)  # type: ignore[arg-type]
    lo, hi = window
    f32: dict[str, Any] = {"dtype": torch.float32, "device": device}

    def volume(a: np.ndarray, fill: float) -> torch.Tensor:
        out = np.full(full, fill, np.float32)
        out[: shape[0], : shape[1], : shape[2]] = a
        return torch.as_tensor(out, **f32)[None, None]

    f_img = volume((np.clip(fixed, lo, hi) - lo) / (hi - lo), 0.0)
    m_img = volume((np.clip(moving, lo, hi) - lo) / (hi - lo), 0.0)
    f_mask = volume(mask.astype(np.float32), 0.0)
    if float(f_mask.sum()) < 1:
        raise ValueError("torch registration: the fixed mask is empty")

    # physical geometry. N: LPS -> grid_sample's [-1, 1] (align_corners=True) of the padded grid, N(p) = Q p + q;
    # every level's points are points of the padded grid, so N is the same on all levels.
    to_lps = torch.as_tensor(grid.direction * np.asarray(grid.spacing)[None, :], **f32)  # columns: i, j, k steps (mm)
    origin = torch.as_tensor(grid.origin, **f32)
    span = torch.as_tensor([n - 1 for n in full[::-1]], **f32)  # (i, j, k) index span of the padded grid
    q_mat = torch.diag(2.0 / span) @ torch.linalg.inv(to_lps)
    q_off = -(q_mat @ origin) - 1.0
    centre = torch.as_tensor(grid.index_to_lps((np.array(shape[::-1], float) - 1) / 2), **f32)
    eye = torch.eye(3, **f32)

    def base(step: int) -> torch.Tensor:
        """N of the points of the level with index step `step`, ``[1, k, j, i, 3]`` (x, y, z last, as grid_sample wants)."""
        axes = [torch.linspace(-1.0, 1.0, (n - 1) // step + 1, **f32) for n in full]
        kk, jj, ii = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([ii, jj, kk], dim=-1)[None]

    def smooth(img: torch.Tensor, sigma: float) -> torch.Tensor:
        from deepali.core import functional as U
        from deepali.core.kernels import gaussian1d

        return U.conv(img, gaussian1d(sigma).to(**f32)) if sigma > 0 else img

    levels = []
    for level in range(s.levels - 1, -1, -1):  # coarsest first
        step = 2**level
        sl = (slice(None), slice(None), slice(None, None, step), slice(None, None, step), slice(None, None, step))
        sigma = 0.5 * step if step > 1 else 0.0
        levels.append({"step": step, "base": base(step), "fixed": smooth(f_img, sigma)[sl].contiguous(),
                       "moving": smooth(m_img, sigma), "mask": (f_mask[sl] > 0.5).to(torch.float32)})

    for level in levels:
        level["inside"] = torch.nonzero(level["mask"].reshape(-1) > 0).reshape(-1)  # flat indices of the mask's points

    def similarity(level: dict[str, Any], sample_at: torch.Tensor) -> torch.Tensor:
        """The metric of the moving image sampled at `sample_at` (N coordinates ``[1, k, j, i, 3]``) against the fixed, in the mask."""
        from deepali.losses import functional as L

        if s.metric == "mi":  # a fresh random sample of the mask's points each iteration (seeded), as Elastix's sampler
            inside = level["inside"]
            if inside.numel() > s.mi_samples:
                inside = inside[torch.randint(0, inside.numel(), (s.mi_samples,), generator=gen, device=device)]
            pts = sample_at.reshape(-1, 3)[inside].view(1, 1, 1, -1, 3)
            w = F.grid_sample(level["moving"], pts, mode="bilinear", padding_mode="zeros", align_corners=True).view(1, 1, -1)
            return L.mi_loss(w, level["fixed"].reshape(-1)[inside].view(1, 1, -1), vmin=0.0, vmax=1.0, num_bins=s.mi_bins)
        warped = F.grid_sample(level["moving"], sample_at, mode="bilinear", padding_mode="zeros", align_corners=True)
        if s.metric == "lncc":
            return _lncc_loss(warped, level["fixed"], level["mask"], s.lncc_window)
        sel = level["mask"] > 0
        return L.ncc_loss(warped[sel][None, None], level["fixed"][sel][None, None])

    # affine stage: A(x) = c + (I + M)(x - c) + t, in N coordinates n -> theta_lin n + theta_off
    lin = torch.zeros((3, 3), requires_grad=True, **f32)
    trans = torch.zeros((3,), requires_grad=True, **f32)
    q_inv = torch.linalg.inv(q_mat)

    def theta() -> tuple[torch.Tensor, torch.Tensor]:
        a = eye + lin
        t_lin = q_mat @ a @ q_inv
        t_off = -(t_lin @ q_off) - q_mat @ (a @ centre) + q_mat @ (centre + trans) + q_off
        return t_lin, t_off

    def affine_points(level: dict[str, Any]) -> torch.Tensor:
        t_lin, t_off = theta()
        return level["base"] @ t_lin.T + t_off

    for level, iters in zip(levels, s.affine_iterations):
        opt = torch.optim.Adam([{"params": [trans], "lr": s.affine_step_mm * level["step"] ** 0.5},
                                {"params": [lin], "lr": s.affine_step_linear}])
        _optimise(opt, iters, lambda lv=level: similarity(lv, affine_points(lv)))
    lin.requires_grad_(False)
    trans.requires_grad_(False)

    # B-spline stage: x -> A(x + u(x)); in N coordinates: theta(n) + theta_lin Q u. Control points every
    # `stride` points of every level (the lattice halves with the level spacing, as Elastix's grid schedule).
    sp = np.asarray(grid.spacing, float)  # (i, j, k)
    strides = tuple(max(1, round(s.final_grid_spacing_mm / v)) for v in sp)  # (sx, sy, sz)
    kernel = B.cubic_bspline_interpolation_weights(stride=strides, dtype=torch.float32, device=device)
    with torch.no_grad():
        t_lin, _ = theta()
        to_n = t_lin @ q_mat  # mm displacement (x, y, z) -> N displacement after the affine

    def level_shape(level: dict[str, Any]) -> tuple[int, int, int]:
        return tuple(level["base"].shape[1:4])  # type: ignore[return-value]

    def field(c: torch.Tensor, shp: tuple[int, int, int]) -> torch.Tensor:
        """The B-spline of coefficients `c` ``[1, 3, ...]`` at the level's points, channels last."""
        return B.evaluate_cubic_bspline(c, shape=shp, kernel=kernel).permute(0, 2, 3, 4, 1)

    coeffs = torch.zeros((1, 3) + control_grid_shape(level_shape(levels[0]), strides), **f32)
    for n, (level, iters) in enumerate(zip(levels, s.bspline_iterations)):
        shp = level_shape(level)
        if n:
            coeffs = refine_coefficients(coeffs, shp, strides)
        coeffs = coeffs.detach().requires_grad_(True)
        cp_mm = torch.as_tensor(sp * np.asarray(strides) * level["step"], **f32).view(1, 3, 1, 1, 1)
        with torch.no_grad():
            start = affine_points(level)
        opt = torch.optim.Adam([coeffs], lr=s.bspline_step_mm * level["step"] ** 0.5)

        def loss(lv: dict[str, Any] = level, c: torch.Tensor = coeffs, cp: torch.Tensor = cp_mm, shp: tuple[int, int, int] = shp,
                 start: torch.Tensor = start) -> torch.Tensor:
            coeffs_n = torch.einsum("ab,nb...->na...", to_n, c)  # the spline is linear in its coefficients
            value = similarity(lv, start + field(coeffs_n, shp))
            if s.bending_weight > 0:
                value = value + s.bending_weight * bending_energy(c / cp)
            return value

        _optimise(opt, iters, loss)

    with torch.no_grad():  # d(x) = A(x + u(x)) - x = (A - I) x + (I + M) u(x), in mm (float64 for the affine part)
        finest = levels[-1]
        u = field(coeffs.detach(), level_shape(finest))[0, : shape[0], : shape[1], : shape[2]].double()
        a = (eye + lin).double()
        k, j, i = np.meshgrid(*(np.arange(v, dtype=float) for v in shape), indexing="ij")
        pts = torch.as_tensor(grid.index_to_lps(np.stack([i, j, k], axis=-1)), dtype=torch.float64, device=device)
        c64, t64 = centre.double(), trans.double()
        disp = (pts - c64) @ (a - torch.eye(3, dtype=torch.float64, device=device)).T + t64 + u @ a.T
    return disp.cpu().numpy()


def control_grid_shape(shape: tuple[int, int, int], strides: tuple[int, int, int]) -> tuple[int, int, int]:
    """``[k, j, i]`` size of the control point lattice of a level of `shape` (control points every `strides` (sx, sy, sz) points)."""
    from deepali.core import bspline as B

    return tuple(B.cubic_bspline_control_point_grid_size(shape[::-1], strides))[::-1]  # type: ignore[return-value]


def refine_coefficients(coeffs: Any, fine_shape: tuple[int, int, int], strides: tuple[int, int, int]) -> Any:
    """B-spline coefficients of the next finer level (``2 n - 1`` points a side): the same function, half the lattice spacing."""
    from deepali.core import bspline as B

    with warnings.catch_warnings():  # deepali 0.6.5 indexes with a list (a torch deprecation warning; same result on torch 2.13)
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        out = B.subdivide_cubic_bspline(coeffs)
    for dim, count in enumerate(control_grid_shape(fine_shape, strides)):
        out = out.narrow(dim + 2, 1, count)
    return out.contiguous()


def bending_energy(coeffs: Any) -> Any:
    """Bending energy of a cubic B-spline at its control points: the value of deepali's
    ``bending_loss(coeffs, mode="bspline", stride=1)`` (derivatives in the lattice's [-1, 1]
    coordinates, mixed terms twice, summed over components, mean over points), its terms added in a
    fixed order. deepali evaluates them in the order of a Python set, so the gradient's summation
    order, and the result's last bits, would change with PYTHONHASHSEED from one process to the next."""
    from deepali.core import bspline as B

    w = {d: B.cubic_bspline_interpolation_weights(stride=1, derivative=d, dtype=coeffs.dtype, device=coeffs.device) for d in (0, 1, 2)}
    step = [2.0 / (n - 1) for n in coeffs.shape[2:][::-1]]  # (x, y, z)
    total = coeffs.new_zeros(())
    for order in ((2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 0), (1, 0, 1), (0, 1, 1)):  # (x, y, z) derivative orders
        scale = math.prod(h**d for h, d in zip(step, order))
        term = (B.evaluate_cubic_bspline(coeffs, kernel=[w[d] for d in order]) / scale).square().sum(dim=1).mean()
        total = total + (2.0 if max(order) == 1 else 1.0) * term
    return total


def _lncc_loss(warped: Any, fixed: Any, mask: Any, window: int) -> Any:
    """1 - mean local squared correlation inside `mask` (box windows of `window` points, separable)."""
    import torch
    from deepali.core import functional as U

    box = torch.full((window,), 1.0 / window, dtype=warped.dtype, device=warped.device)
    m = U.conv(torch.cat([warped, fixed, warped * warped, fixed * fixed, warped * fixed], dim=1), box)
    mw, mf, mww, mff, mwf = m.unbind(1)
    cross = mwf - mw * mf
    var_w = (mww - mw * mw).clamp_min(0.0)
    var_f = (mff - mf * mf).clamp_min(0.0)
    cc = cross * cross / (var_w * var_f + 1e-6)
    return 1.0 - (cc * mask[:, 0]).sum() / mask.sum()


def _optimise(opt: Any, iterations: int, loss_fn: Any) -> None:
    """Adam steps with the step size falling linearly to a tenth over the level."""
    for it in range(iterations):
        scale = 1.0 - 0.9 * it / max(1, iterations - 1)
        for g in opt.param_groups:
            g.setdefault("initial_lr", g["lr"])
            g["lr"] = g["initial_lr"] * scale
        opt.zero_grad(set_to_none=True)
        value = loss_fn()
        value.backward()
        opt.step()
