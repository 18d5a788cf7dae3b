"""Placing the primary tumour and the lymph nodes in one patient's canonical anatomy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nstage.geometry import Grid
from nstage.stations import by_name
from nstage.synth.anatomy import Anatomy
from nstage.synth.disease import DiseaseSpec, NodeSpec, TumourSpec, node_config
from nstage.synth.frame import CanonicalFrame, identity_frame
from nstage.synth.rasterize import Canvas, paint_anatomy
from nstage.synth.shapes import Ellipsoid, Union, rotation_towards
from nstage.synth.station_builder import build_stations
from nstage.synth.tissues import label

DESIGN_SPACING = 2.5


@dataclass(frozen=True)
class PlacedNode:
    spec: NodeSpec
    shape: Ellipsoid  # canonical
    instance: int


@dataclass(frozen=True)
class PlacedTumour:
    spec: TumourSpec
    shape: Union  # canonical, lobulated
    necrosis: Ellipsoid | None
    centre: np.ndarray  # canonical


def lobe_of(side: str, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Lobe names of lung points from the fissure planes (oblique, and horizontal on the right)."""
    upper = z > 35.0 + (y - 80.0) * (155.0 / 140.0)
    if side == "L":
        return np.where(upper, "LUL", "LLL")
    return np.where(~upper, "RLL", np.where(z > -30.0, "RUL", "RML"))


def design_canvas(anatomy: Anatomy) -> tuple[Canvas, np.ndarray]:
    """The patient's anatomy and stations on a coarse canonical grid, for placing lesions."""
    grid = Grid.covering(np.array([-150.0, -115.0, -210.0]), np.array([150.0, 105.0, 185.0]), (DESIGN_SPACING,) * 3)
    canvas = Canvas.create(grid, identity_frame())
    paint_anatomy(canvas, anatomy)
    return canvas, build_stations(canvas, anatomy)


def _random_rotation(rng: np.random.Generator, mostly_vertical: bool) -> np.ndarray:
    axis = rng.normal(0, 1, 3)
    if mostly_vertical:
        axis[2] += 2.5 * np.sign(axis[2] or 1.0)
    return rotation_towards(axis)


def place_tumour(rng: np.random.Generator, canvas: Canvas, spec: TumourSpec, scale: float) -> PlacedTumour:
    """A lobulated tumour inside the lung lobe of `spec` (central ones near the hilum)."""
    lung = canvas.tissue == label("lung")
    depth = ndimage.distance_transform_edt(lung, sampling=DESIGN_SPACING)
    r = spec.diameter_mm / 2.0 / scale
    side_ok = (canvas.cx < 0) if spec.side == "R" else (canvas.cx > 0)
    ok = lung & side_ok & (lobe_of(spec.side, canvas.cy, canvas.cz) == spec.lobe)
    hilum = np.array([-35.0 if spec.side == "R" else 38.0, 5.0, -20.0])
    dist_hilum = np.sqrt((canvas.cx - hilum[0]) ** 2 + (canvas.cy - hilum[1]) ** 2 + (canvas.cz - hilum[2]) ** 2)
    want = ok & (depth >= min(r * 0.8, depth[ok].max() if ok.any() else 0))
    want &= (dist_hilum < 45 + r) if spec.central else (dist_hilum > 40 + r)
    if not want.any():
        want = ok & (depth >= 0.5 * depth[ok].max()) if ok.any() else lung & side_ok
    flat = np.flatnonzero(want)
    i = flat[rng.integers(flat.size)]
    centre = np.array([canvas.cx.ravel()[i], canvas.cy.ravel()[i], canvas.cz.ravel()[i]], float)
    parts = [Ellipsoid(centre, np.array([r, r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.1)]), _random_rotation(rng, False))]
    for _ in range(int(rng.integers(2, 5))):
        off = rng.normal(0, 1, 3)
        off = off / np.linalg.norm(off) * r * rng.uniform(0.4, 0.8)
        parts.append(Ellipsoid(centre + off, np.full(3, r * rng.uniform(0.35, 0.6))))
    necrosis = Ellipsoid(centre, np.full(3, r * 0.45)) if spec.necrotic else None
    return PlacedTumour(spec, Union(tuple(parts)), necrosis, centre)


NODE_GROUND = ("mediastinal_fat", "lung")  # what a node may be painted over: it displaces fat and bulges into the lung


def node_ground(tissue: np.ndarray) -> np.ndarray:
    """Where a node may be painted: the voxels of `tissue` (labels) in NODE_GROUND."""
    return np.isin(tissue, [label(t) for t in NODE_GROUND])


def _free_fraction(canvas: Canvas, shape: Ellipsoid, taken: np.ndarray) -> float:
    """Share of `shape`'s voxels that are fat or lung not yet taken by the tumour or another node."""
    found = canvas.box_mask(shape)
    if found is None:
        return 0.0
    box, m = found
    free = node_ground(canvas.tissue[box]) & ~taken[box]
    return float(np.count_nonzero(free & m)) / max(int(m.sum()), 1)


def patient_ellipsoid(frame: CanonicalFrame, centre: np.ndarray, semi_mm: np.ndarray, rotation: np.ndarray) -> Ellipsoid:
    """The canonical ellipsoid at `centre` that the frame maps onto an ellipsoid of `semi_mm` (mm) and
    `rotation` in the patient: its size and shape are as drawn, whatever the patient's scale and local
    deformation (the frame's Jacobian at the centre)."""
    p0 = frame.to_patient(centre)
    h = 0.5
    jac = np.stack([(frame.to_canonical(p0 + h * e) - frame.to_canonical(p0 - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    u, sigma, _ = np.linalg.svd(jac @ rotation @ np.diag(semi_mm))
    if np.linalg.det(u) < 0:
        u[:, -1] = -u[:, -1]
    return Ellipsoid(centre, sigma, u)


def place_nodes(rng: np.random.Generator, canvas: Canvas, stations: np.ndarray, nodes: tuple[NodeSpec, ...], frame: CanonicalFrame,
                taken: np.ndarray | None = None) -> list[PlacedNode]:
    """Each node inside its station, largest first, where no vessel, airway or other lesion cuts it.

    Nodes are painted over fat and lung only (NODE_GROUND), so a node drawn across a vessel, an
    airway or the tumour would show smaller than its truth says. Each node takes the first of up to
    `tries` positions and orientations whose ellipsoid is at least `min_free_fraction` free fat or
    lung (config/synth/nodes.json "placement"), else the one of most free ground among them.
    """
    rules = node_config()["placement"]
    tries, min_free = int(rules["tries"]), float(rules["min_free_fraction"])
    scale = float(np.mean(frame.scale))
    table = by_name()
    free = stations.copy()
    taken = np.zeros(canvas.grid.shape, bool) if taken is None else taken.copy()
    boxes = dict(enumerate(ndimage.find_objects(stations), start=1))
    placed: list[PlacedNode] = []
    for k in sorted(range(len(nodes)), key=lambda k: -nodes[k].short_axis_mm):
        spec = nodes[k]
        lab = table[spec.station].label
        box = boxes.get(lab)
        if box is None:
            continue
        box = tuple(slice(max(b.start - 2, 0), b.stop + 2) for b in box)
        depth = ndimage.distance_transform_edt(free[box] == lab, sampling=DESIGN_SPACING)
        if depth.max() <= 0:
            continue
        need = min(spec.short_axis_mm / 2.0 / scale * 0.9, depth.max())
        deep, anywhere = np.flatnonzero(depth >= need), np.flatnonzero(depth > 0)
        best: tuple[float, Ellipsoid] | None = None
        for attempt in range(tries):
            flat = deep if attempt < tries // 2 else anywhere  # then nearer the station's border, into the fat or lung beyond
            i = np.unravel_index(flat[rng.integers(flat.size)], depth.shape)
            centre = np.array([canvas.cx[box][i], canvas.cy[box][i], canvas.cz[box][i]], float)
            # the third axis is never shorter than the short axis, so the axial short axis is the drawn one
            semi = np.array([spec.long_axis_mm / 2.0, spec.short_axis_mm / 2.0, spec.short_axis_mm / 2.0 * rng.uniform(1.0, 1.1)])
            shape = patient_ellipsoid(frame, centre, semi, _random_rotation(rng, True))
            fit = _free_fraction(canvas, shape, taken)
            if best is None or fit > best[0]:
                best = (fit, shape)
            if fit >= min_free:
                break
        assert best is not None
        shape = best[1]
        placed.append(PlacedNode(spec, shape, instance=3 + k))
        found = canvas.box_mask(shape.inflated(1.0))
        if found is not None:
            free[found[0]][found[1]] = 0
            taken[found[0]] |= found[1]
    return sorted(placed, key=lambda n: n.instance)


def place_lesions(rng: np.random.Generator, anatomy: Anatomy, disease: DiseaseSpec, frame: CanonicalFrame) -> tuple[PlacedTumour, list[PlacedNode]]:
    """Tumour and nodes of one patient, in canonical space (`frame`: how it maps onto the patient)."""
    canvas, stations = design_canvas(anatomy)
    tumour = place_tumour(rng, canvas, disease.tumour, float(np.mean(frame.scale)))
    return tumour, place_nodes(rng, canvas, stations, disease.nodes, frame, canvas.mask_of(tumour.shape))
