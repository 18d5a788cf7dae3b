"""The map between patient space (LPS mm) and the canonical anatomy frame.

canonical = (patient - translation) / scale - displacement(patient)

`scale` carries the patient's size; `displacement` is a smooth random field (a few low-frequency
waves, a handful of millimetres) that makes every patient's shapes a little different.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nstage.geometry import Grid

SLAB_VOXELS = 1 << 18  # grid_coordinates works on about this many voxels at a time


@dataclass(frozen=True)
class CanonicalFrame:
    translation: np.ndarray  # LPS position of the canonical origin (the carina)
    scale: np.ndarray  # (3,) per-axis scale canonical -> patient
    wave_k: np.ndarray  # (n, 3) wave vectors, rad/mm
    wave_phase: np.ndarray  # (n,)
    wave_amp: np.ndarray  # (n, 3) displacement amplitudes, mm

    @property
    def max_displacement(self) -> float:
        return float(np.abs(self.wave_amp).sum(axis=0).max())

    def displacement(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        out = [np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), np.float32) for _ in range(3)]
        for k, ph, amp in zip(self.wave_k, self.wave_phase, self.wave_amp):
            s = np.sin((k[0] * x + k[1] * y + k[2] * z + ph).astype(np.float32))
            for c in range(3):
                if amp[c] != 0:
                    out[c] += np.float32(amp[c]) * s
        return tuple(out)

    def to_canonical(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) patient LPS points to canonical points."""
        p = np.asarray(points, float)
        d = np.stack(self.displacement(p[..., 0], p[..., 1], p[..., 2]), axis=-1)
        return (p - self.translation) / self.scale - d

    def to_patient(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) canonical points to patient LPS (fixed-point inversion of the displacement)."""
        c = np.asarray(points, float)
        p = self.translation + self.scale * c
        for _ in range(8):
            d = np.stack(self.displacement(p[..., 0], p[..., 1], p[..., 2]), axis=-1)
            p = self.translation + self.scale * (c + d)
        return p

    def grid_coordinates(self, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical coordinates of every voxel of an axis-aligned grid, float32 ``[k, j, i]`` arrays."""
        xyz = self.grid_coordinates_stacked(grid)
        return xyz[0], xyz[1], xyz[2]

    def grid_coordinates_stacked(self, grid: Grid) -> np.ndarray:
        """grid_coordinates as one float32 (3, k, j, i) array.

        The numbers of ``(X - t) / s - displacement(X, Y, Z)`` over the broadcast axes, worked out a
        few slices at a time (the same operations on each voxel, with small temporaries)."""
        xs, ys, zs = (a.astype(np.float32) for a in grid.axis_coordinates())
        X, Y, Z = xs[None, None, :], ys[None, :, None], zs[:, None, None]
        t, s = self.translation.astype(np.float32), self.scale.astype(np.float32)
        nz, ny, nx = grid.shape
        out = np.empty((3, nz, ny, nx), np.float32)
        base = ((X - t[0]) / s[0], (Y - t[1]) / s[1], (Z - t[2]) / s[2])
        planes = [k[0] * X + k[1] * Y for k in self.wave_k]  # float64 (1, ny, nx)
        step = max(1, SLAB_VOXELS // max(1, ny * nx))
        arg = np.empty((min(step, nz), ny, nx))
        wave = np.empty(arg.shape, np.float32)
        term = np.empty(arg.shape, np.float32)
        for z0 in range(0, nz, step):
            z1 = min(z0 + step, nz)
            n = z1 - z0
            d = out[:, z0:z1]
            d[...] = 0.0
            a, w, tm = arg[:n], wave[:n], term[:n]
            for k, ph, amp, plane in zip(self.wave_k, self.wave_phase, self.wave_amp, planes):
                np.add(plane, k[2] * Z[z0:z1], out=a)
                a += ph
                np.sin(a.astype(np.float32), out=w)
                for c in range(3):
                    if amp[c] != 0:
                        np.multiply(np.float32(amp[c]), w, out=tm)
                        d[c] += tm
            for c in range(3):
                np.subtract(base[c] if c < 2 else base[2][z0:z1], d[c], out=d[c])
        return out

    def patient_box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A patient-space box sure to contain the canonical box [lo, hi]."""
        m = self.max_displacement + 0.5
        a = self.translation + self.scale * (np.asarray(lo) - m)
        b = self.translation + self.scale * (np.asarray(hi) + m)
        return np.minimum(a, b), np.maximum(a, b)


def sample_frame(rng: np.random.Generator, size: float, width: float, depth: float, translation: np.ndarray, amplitude_mm: float = 3.0) -> CanonicalFrame:
    """A patient's frame: overall size, a smooth random deformation of about `amplitude_mm`."""
    n = 6
    wavelength = rng.uniform(200.0, 400.0, n)  # long waves: little local shear
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    k = direction * (2 * np.pi / wavelength)[:, None]
    amp = rng.normal(0.0, amplitude_mm / np.sqrt(n / 2), size=(n, 3))
    scale = np.array([size * width, size * depth, size]) * rng.normal(1.0, 0.015, 3)
    return CanonicalFrame(np.asarray(translation, float), scale, k, rng.uniform(0, 2 * np.pi, n), amp)


def identity_frame() -> CanonicalFrame:
    """Patient space equals canonical space (the reference anatomy)."""
    return CanonicalFrame(np.zeros(3), np.ones(3), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)))
