"""Parametric thorax anatomy in a canonical frame, varied per patient.

The canonical frame: millimetres, LPS axes (+x patient left, +y posterior, +z superior), origin
on the tracheal axis at the carina. :func:`sample_params` draws one patient's proportions;
:func:`build_anatomy` turns them into organs (signed-distance shapes, painted in order), the
mediastinal/hilar envelope and the landmarks the station builder needs. ``AnatomyParams()``
with its defaults is the reference anatomy (used for the default atlas).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from nstage.synth.shapes import (
    Clipped,
    Ellipsoid,
    Profile,
    Rind,
    RoundedBox,
    Shape,
    Tube,
    Union,
    rotation_towards,
)


@dataclass(frozen=True)
class AnatomyParams:
    """One patient's proportions (defaults: the reference adult)."""

    sex: str = "M"
    size: float = 1.0  # skeleton/mediastinum scale
    width: float = 1.0  # extra lateral scale of the chest
    depth: float = 1.0  # extra antero-posterior scale
    fat_mm: float = 15.0  # subcutaneous fat thickness
    muscle_mm: float = 12.0
    trachea_radius: float = 9.0
    aorta_scale: float = 1.0
    arch_dz: float = 0.0  # arch height offset
    heart_scale: float = 1.0
    heart_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    dome_right: float = -105.0
    dome_left: float = -118.0
    apex_z: float = 138.0
    upper_z_scale: float = 0.63  # heights above the carina are scaled by it (see build_anatomy)
    arms_down: bool = False
    breasts: bool = False
    vessel_seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def sample_params(rng: np.random.Generator, sex: str, bmi: float, height_m: float) -> AnatomyParams:
    """Draw one patient's anatomy from their sex, BMI and height."""
    size = (height_m / (1.76 if sex == "M" else 1.63)) ** 0.6 * (1.0 if sex == "M" else 0.93)
    fat = max(4.0, 4.0 + (bmi - 18.0) * 1.7 * (1.3 if sex == "F" else 1.0) + rng.normal(0, 3))
    right = -105.0 + rng.normal(0, 10)
    return AnatomyParams(
        sex=sex,
        size=float(size * rng.normal(1.0, 0.03)),
        width=float(np.clip(rng.normal(1.0 + (bmi - 25) * 0.006, 0.04), 0.85, 1.2)),
        depth=float(np.clip(rng.normal(1.0 + (bmi - 25) * 0.008, 0.05), 0.85, 1.25)),
        fat_mm=float(fat),
        muscle_mm=float(np.clip(rng.normal(12 if sex == "M" else 10, 2.5), 6, 20)),
        trachea_radius=float(np.clip(rng.normal(9.0 if sex == "M" else 8.0, 0.7), 6.5, 11)),
        aorta_scale=float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.3)),
        arch_dz=float(rng.normal(0, 6)),
        heart_scale=float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.25)),
        heart_shift=tuple(float(v) for v in rng.normal(0, [6, 5, 6])),
        dome_right=float(right),
        dome_left=float(right - 13 + rng.normal(0, 5)),
        apex_z=float(138 + rng.normal(0, 8)),
        arms_down=bool(rng.random() < 0.15),
        breasts=bool(sex == "F"),
        vessel_seed=int(rng.integers(0, 2**31 - 1)),
        upper_z_scale=float(np.clip(rng.normal(0.63, 0.05), 0.5, 0.78)),
    )


INSIDE_BODY = ("skin", "subcutaneous_fat", "muscle", "lung", "mediastinal_fat", "abdominal_tissue", "airway_wall", "oesophagus",
               "arterial_blood", "venous_blood", "cartilage", "bone_cortex", "bone_marrow", "breast")


@dataclass(frozen=True)
class Structure:
    """An organ painted with one tissue; `over` limits painting to voxels of those tissues."""

    name: str
    tissue: str
    shape: Shape
    over: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Landmarks:
    """Heights (canonical z, mm) and borders used by the station rules (clinical-rules.md s.1)."""

    z_cricoid: float
    z_notch: float  # upper border of the manubrium
    z_bcv: float  # caudal margin of the left brachiocephalic vein where it crosses the trachea
    z_arch_top: float
    z_arch_bottom: float
    z_azygos_low: float  # lower border of the azygos arch
    z_lpa_top: float  # upper rim of the left pulmonary artery
    z_carina: float
    z_subcarinal_low: float  # lower border of the bronchus intermedius
    z_ipv: float  # inferior pulmonary veins
    z_diaphragm: float  # central tendon
    x_ligamentum: float  # ligamentum arteriosum (left border of 4L, medial border of 5)


@dataclass
class Anatomy:
    """The organs (in paint order), envelopes and landmarks of one patient, canonical frame."""

    params: AnatomyParams
    structures: list[Structure]
    organs: dict[str, Shape]
    cavity: Profile
    body: Profile
    envelope: Shape  # mediastinum + hilar sleeves (fat unless an organ is there)
    landmarks: Landmarks
    lung_vessel_roots: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def diaphragm_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the diaphragm dome surface (lungs above, abdomen below)."""
        return diaphragm_height(self.params, x, y)


def diaphragm_height(p: AnatomyParams, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    w = 110.0 * p.width
    right = p.dome_right - 95.0 * (((x + 62 * p.width) / w) ** 2 + ((y - 5) / (0.9 * w)) ** 2)
    left = p.dome_left - 95.0 * (((x - 62 * p.width) / w) ** 2 + ((y - 5) / (0.9 * w)) ** 2)
    return np.maximum(right, left)


def _pts(*points: tuple[float, float, float]) -> np.ndarray:
    return np.asarray(points, dtype=float)


def upper_z_map(z: np.ndarray | float, scale: float) -> np.ndarray:
    """Heights above the carina (z > 0) scaled by `scale`; the carina and everything below stay.

    The organs above the carina are laid out at heights that give a lung apex about 150 mm above
    the carina; adults measure about 85-100 mm (the apex at T1, the carina at T4-T5, vertebrae about
    25 mm apart; the real chest CT of ../shared/data/real-ct: 85 mm). Scaling the layout's heights,
    not the organs' cross-sections, keeps tubes round and vertebrae their size.
    """
    z = np.asarray(z, dtype=float)
    return np.where(z > 0.0, z * scale, z)


def build_anatomy(p: AnatomyParams = AnatomyParams()) -> Anatomy:
    """All organs of one patient in canonical space."""
    W, D = p.width, p.depth
    f = p.upper_z_scale

    def Z(z: float) -> float:
        return float(upper_z_map(z, f))

    def P(*points: tuple[float, float, float]) -> np.ndarray:
        a = _pts(*points)
        a[:, 2] = upper_z_map(a[:, 2], f)
        return a

    ra = p.aorta_scale
    dz = p.arch_dz
    organs: dict[str, Shape] = {}

    # --- outlines ------------------------------------------------------------------------------
    z_tab = np.array([-280.0, -150, -60, 0, 60, 100, 122, 135, 160, 260])
    cav_w = np.array([118.0, 122, 125, 125, 114, 92, 70, 45, 10, 10]) * W
    cav_d = np.array([86.0, 86, 86, 84, 75, 62, 52, 38, 10, 10]) * D
    cav_y = np.array([5.0, 5, 5, 5, 8, 14, 18, 20, 20, 20])
    apex_scale = p.apex_z / 138.0
    z_cav = upper_z_map(np.where(z_tab > 60, 60 + (z_tab - 60) * apex_scale, z_tab), f)
    cavity = Profile(z_cav, cav_w, cav_d, cav_y, exponent=2.3)
    wall = 12.0 + p.muscle_mm + p.fat_mm
    body_w = np.array([118.0 + wall, 122 + wall, 125 + wall, 125 + wall, 120 + wall, 112 + wall, 98 + wall * 0.8, 70 + p.fat_mm, 62 + p.fat_mm, 60 + p.fat_mm])
    body_w[:6] = cav_w[:6] + wall
    body_d = np.array([86.0, 86, 86, 84, 78, 68, 62, 55, 52, 52]) * D + np.array([wall] * 6 + [wall * 0.8, p.fat_mm + 12, p.fat_mm + 10, p.fat_mm + 10])
    body_y = np.array([5.0, 5, 5, 5, 10, 16, 20, 22, 22, 22])
    body = Profile(upper_z_map(z_tab, f), body_w, body_d, body_y, exponent=2.6)
    muscle_outline = body.inflated(-p.fat_mm)

    # --- airways -------------------------------------------------------------------------------
    rt = p.trachea_radius
    trachea = Tube.through(P((0, -30, 210), (0, -24, 150), (0, -15, 80), (0, -5, 30), (0, 0, 0)), rt)
    rmb = Tube.through(P((0, 0, 0), (-12, 2, -7), (-23, 5, -15)), rt * 0.78)
    lmb = Tube.through(P((0, 0, 0), (20, 5, -14), (40, 12, -30)), rt * 0.72)
    rul = Tube.through(P((-23, 5, -15), (-40, 3, -9), (-55, -4, 4)), rt * 0.5)
    bi = Tube.through(P((-23, 5, -15), (-27, 7, -28), (-30, 9, -42)), rt * 0.6)
    rml = Tube.through(P((-30, 9, -42), (-40, -3, -50), (-50, -15, -58)), rt * 0.4)
    rll = Tube.through(P((-30, 9, -42), (-36, 17, -58), (-42, 26, -78)), rt * 0.5)
    lul = Tube.through(P((40, 12, -30), (52, 2, -22), (60, -10, -8)), rt * 0.5)
    lll = Tube.through(P((40, 12, -30), (45, 19, -50), (50, 27, -74)), rt * 0.5)
    ling = Tube.through(P((52, 2, -22), (58, -12, -36), (62, -26, -48)), rt * 0.35)
    airways = {"trachea": trachea, "rmb": rmb, "lmb": lmb, "rul_bronchus": rul, "bronchus_intermedius": bi,
               "rml_bronchus": rml, "rll_bronchus": rll, "lul_bronchus": lul, "lll_bronchus": lll, "lingula_bronchus": ling}
    organs.update(airways)

    # --- great vessels -------------------------------------------------------------------------
    aorta = Tube.through(
        P((-3, -36, -52), (-8, -40, -20), (-8, -40, 8 + dz), (-2, -36, 28 + dz), (10, -32, 38 + dz), (24, -12, 39 + dz),
             (32, 10, 31 + dz), (33, 28, 15 + dz), (31, 34, -10), (28, 34, -80), (20, 30, -160), (10, 28, -280)),
        [15 * ra, 15.5 * ra, 15 * ra, 14 * ra, 13.5 * ra, 13 * ra, 12.5 * ra, 12 * ra, 12 * ra, 11.5 * ra, 11 * ra, 10 * ra],
    )
    bct = Tube.through(P((-2, -34, 40 + dz), (-12, -27, 65), (-18, -24, 88), (-24, -20, 100)), 6.5)
    r_subclavian = Tube.through(P((-24, -20, 100), (-45, -12, 108), (-75, -8, 110)), 4.5)
    r_carotid = Tube.through(P((-24, -20, 100), (-27, -18, 150), (-30, -10, 220)), 4.0)
    l_carotid = Tube.through(P((10, -28, 45 + dz), (17, -22, 90), (24, -16, 150), (28, -10, 220)), 4.0)
    l_subclavian = Tube.through(P((22, -12, 46 + dz), (28, -6, 80), (45, -4, 100), (75, -6, 108)), 5.0)
    lbcv = Tube.through(P((70, -18, 92), (45, -32, 72), (18, -44, 60 + dz), (-12, -42, 54 + dz), (-30, -30, 48)), 7.0)
    rbcv = Tube.through(P((-70, -14, 96), (-45, -22, 78), (-32, -29, 50)), 7.5)
    svc = Tube.through(P((-32, -29, 50), (-33, -28, 20), (-32, -26, -10), (-28, -24, -38)), 9.5)
    azygos = Tube.through(P((-12, 32, -280), (-12, 34, -120), (-13, 32, -20), (-14, 28, 4), (-20, 10, 10), (-27, -14, 10), (-31, -22, 8)), 4.5)
    hemiazygos = Tube.through(P((14, 36, -280), (12, 36, -140), (6, 36, -90), (-10, 34, -85)), 3.0)
    ivc = Tube.through(P((-22, 15, -280), (-24, 5, -160), (-22, -8, -120)), 11.0)
    pt = Tube.through(P((8, -58, -60), (10, -42, -32), (12, -24, -12)), 14.0)
    lpa = Tube.through(P((12, -24, -12), (28, -10, -3), (45, 8, -9), (56, 20, -38), (60, 26, -60)), [10, 9.5, 9, 7, 5])
    rpa = Tube.through(P((12, -24, -12), (-6, -14, -20), (-26, -10, -22), (-44, -4, -30), (-56, 4, -52)), [10, 9.5, 9, 7, 5])
    vessels = {"aorta": aorta, "brachiocephalic_trunk": bct, "right_subclavian": r_subclavian, "right_carotid": r_carotid,
               "left_carotid": l_carotid, "left_subclavian": l_subclavian, "pulmonary_trunk": pt, "lpa": lpa, "rpa": rpa}
    veins = {"left_bcv": lbcv, "right_bcv": rbcv, "svc": svc, "azygos": azygos, "hemiazygos": hemiazygos, "ivc": ivc}

    # --- heart ---------------------------------------------------------------------------------
    hs = p.heart_scale
    hx, hy, hz = p.heart_shift
    heart_axis = rotation_towards(np.array([0.55, -0.5, -0.55]))
    # heart centre 26 mm left of the midline: the soft tissue in front of and below the carina then lies
    # about +20 mm left (thorax_landmarks' heart offset), as on the real CT (+24 mm); it was +13 mm
    heart_c = np.array([26 + hx, -38 + hy, -92 + hz])
    heart = Ellipsoid(heart_c, np.array([62, 48, 50]) * hs, heart_axis)
    lv_c = heart_c + np.array([18, 8, -8]) * hs
    lv_outer = Ellipsoid(lv_c, np.array([46, 30, 30]) * hs, heart_axis)
    lv_cavity = Ellipsoid(lv_c + np.array([-2, -2, 2]), np.array([34, 18, 18]) * hs, heart_axis)
    la = Ellipsoid(np.array([5 + hx * 0.5, -1, -57 + hz * 0.3]), np.array([34, 14, 17]) * hs)
    heart_blood = heart.inflated(-4.0)
    pv = {
        "pv_right_superior": Tube.through(P((-48, -6, -30), (-30, -4, -45), (-14, -2, -52)), 6.0),
        "pv_right_inferior": Tube.through(P((-44, 16, -68), (-28, 8, -62), (-12, 3, -60)), 6.0),
        "pv_left_superior": Tube.through(P((50, 0, -30), (34, 0, -46), (22, -1, -52)), 6.0),
        "pv_left_inferior": Tube.through(P((46, 20, -68), (32, 10, -62), (22, 4, -60)), 6.0),
    }
    organs.update(vessels)
    organs.update(veins)
    organs.update(pv)
    organs.update({"heart": heart, "left_ventricle": lv_outer, "left_atrium": la})

    # --- oesophagus, thyroid -------------------------------------------------------------------
    oes = Tube.through(P((2, 12, 220), (3, 16, 120), (4, 20, 40), (6, 22, 0), (8, 24, -60), (14, 18, -120), (26, 8, -160), (45, 0, -175)), 8.5)
    oes_lumen = Tube.through(P((2, 12, 220), (3, 16, 120), (4, 20, 40), (6, 22, 0), (8, 24, -60), (14, 18, -120)), 2.0)
    thyroid = Union((
        Ellipsoid(np.array([-17, -20, Z(132)]), np.array([9, 11, 22 * f])),
        Ellipsoid(np.array([17, -20, Z(132)]), np.array([9, 11, 22 * f])),
        Ellipsoid(np.array([0, -31, Z(122)]), np.array([14, 4, 6])),
    ))
    organs.update({"oesophagus": oes, "thyroid": thyroid})

    # --- skeleton ------------------------------------------------------------------------------
    spine_line = P((0, 40, 260), (0, 42, 150), (0, 52, 60), (0, 56, 0), (0, 54, -100), (0, 46, -200), (0, 40, -280))
    spine = Tube.through(spine_line, [14, 15, 18, 20, 21, 23, 24])
    canal = Tube.through(spine_line + np.array([0, 30, 0]), [7, 7, 8, 8, 8, 8, 8])
    bones: list[Shape] = []
    marrow: list[Shape] = []
    discs: list[Shape] = []
    for zc in np.arange(-270.0, Z(250.0), 27.0):
        c = np.array(spine.point_at_z(zc) if spine.point_at_z(zc) is not None else [0, 50, zc])
        r = float(np.interp(zc, spine_line[::-1, 2], [24, 23, 21, 20, 18, 15, 14]))
        body_v = Tube(np.array([c + [0, 0, -10.5], c + [0, 0, 10.5]]), np.array([r, r]))
        bones.append(body_v)
        marrow.append(body_v.inflated(-2.0))
        discs.append(Tube(np.array([c + [0, 0, 10.5], c + [0, 0, 16.5]]), np.array([r - 1, r - 1])))
        arch_c = c + np.array([0, 30, 0])
        bones.append(Tube(np.array([arch_c + [0, 0, -8], arch_c + [0, 0, 8]]), np.array([13.0, 13.0])))
        bones.append(Tube.through(P(tuple(arch_c + [0, 10, 0]), tuple(arch_c + [0, 34, -18])), 5.0))
        for s in (-1, 1):
            bones.append(Tube.through(P(tuple(arch_c + [0, 0, 2]), tuple(arch_c + [s * 32, 2, 4])), 5.0))
    # ribs: follow the cavity wall from the transverse process forwards, sloping down
    ribs: list[Shape] = []
    for i, z0 in enumerate(np.linspace(Z(112), -160, 12)):  # rib spacing stays about 21 mm
        theta = np.linspace(0.22, 2.7 if i < 7 else 2.3 - 0.12 * (i - 7), 18)
        zz = z0 - 55 * (theta - theta[0]) / (2.7 - 0.22) * (0.6 if i == 0 else 1.0)
        a, b, yc = cavity.at(zz)
        scale = 1.0 if i > 0 else 0.85
        for s in (-1, 1):
            pts = np.stack([s * (a * scale + 6) * np.sin(theta), yc + (b + 6) * np.cos(theta), zz], axis=1)
            pts = np.vstack([np.array([s * 30, 86 + (z0 - 60) * 0.0, z0 + 3]), pts])
            ribs.append(Tube.through(pts, 4.5 if i > 0 else 5.0, step=6.0))
    z_notch = Z(92.0)
    sternum_y = -(84 * D) - 2
    manubrium = RoundedBox(np.array([0, sternum_y - 4, z_notch - 24]), np.array([22, 5, 22]), 3.0)
    body_top = z_notch - 46 + 9  # the body meets the manubrium
    sternum_body = RoundedBox(np.array([0, sternum_y - 2, (body_top - 95) / 2]), np.array([13, 4, (body_top + 95) / 2]), 3.0)
    costal = [
        Tube.through(P((s * 12, sternum_y, zc), (s * 40, sternum_y + 6, zc - 8), (s * 75, sternum_y + 25, zc - 20)), 4.5)
        for s in (-1, 1) for zc in (Z(40), Z(15), -15, -45, -75)
    ]
    clavicles = [
        Tube.through(P((s * 24, sternum_y - 8, z_notch + 2), (s * 60, sternum_y - 4, z_notch + 8), (s * 105, sternum_y + 20, z_notch + 14),
                          (s * 135 * W, sternum_y + 50, z_notch + 18)), 7.0)
        for s in (-1, 1)
    ]
    scapulae = [Ellipsoid(np.array([s * 96 * W, 88 * D, Z(45)]), np.array([45, 6, 65]), rotation_towards(np.array([s * 0.81, -0.58, 0.0]))) for s in (-1, 1)]
    skeleton_cortex = Union(tuple(bones + ribs + [manubrium, sternum_body] + clavicles + scapulae))
    skeleton_marrow = Union(tuple(marrow + [r.inflated(-2.0) for r in ribs] + [manubrium.inflated(-2.0), sternum_body.inflated(-2.0)]
                                  + [c.inflated(-2.5) for c in clavicles]))
    organs.update({"spine": spine, "spinal_canal": canal, "manubrium": manubrium, "sternum": sternum_body})
    paraspinal = Union(tuple(Tube.through(spine_line + np.array([s * 38, 42, 0]), 24.0) for s in (-1, 1)))

    # --- abdomen -------------------------------------------------------------------------------
    def below_diaphragm(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return z - (diaphragm_height(p, x, y) - 5.0)

    liver = Clipped(Ellipsoid(np.array([-40 * W, 0, -175]), np.array([105 * W, 88 * D, 85])), below_diaphragm)
    stomach = Clipped(Ellipsoid(np.array([62 * W, -12, -165]), np.array([42, 36, 42])), below_diaphragm)
    stomach_air = Clipped(Ellipsoid(np.array([62 * W, -28, -150]), np.array([30, 18, 24])), below_diaphragm)
    spleen = Clipped(Ellipsoid(np.array([88 * W, 48, -170]), np.array([26, 45, 50]), rotation_towards(np.array([0.4, 1, 0.2]))), below_diaphragm)

    def above_diaphragm(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return (diaphragm_height(p, x, y) + 1.0) - z

    def diaphragm_shell(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.abs(z - (diaphragm_height(p, x, y) - 2.5)) - 2.5

    thorax_cavity = Clipped(cavity, above_diaphragm)
    abdomen_cavity = Clipped(cavity, below_diaphragm)
    diaphragm = Clipped(cavity, diaphragm_shell)

    # --- envelope: mediastinum and hilar sleeves ---------------------------------------------------
    central = Union((
        RoundedBox(np.array([2, -30, (Z(110) - 90) / 2]), np.array([14, 48, (Z(110) + 90) / 2]), 8.0),
        RoundedBox(np.array([0, -10, (Z(250) + Z(100)) / 2]), np.array([30, 26, (Z(250) - Z(100)) / 2]), 10.0),
        RoundedBox(np.array([6, 22, -80]), np.array([12, 12, 60]), 6.0),
    ))
    envelope = Union((
        central,
        trachea.inflated(9), oes.inflated(9), aorta.inflated(6), svc.inflated(7), bct.inflated(6), l_carotid.inflated(6),
        l_subclavian.inflated(5), lbcv.inflated(5), rbcv.inflated(5), azygos.inflated(6), pt.inflated(6), heart.inflated(6),
        la.inflated(6), ivc.inflated(4), rmb.inflated(9), lmb.inflated(9), bi.inflated(8), lpa.inflated(8), rpa.inflated(8),
        rul.inflated(6), lul.inflated(6), rll.inflated(5), lll.inflated(5), rml.inflated(4), thyroid.inflated(6),
        *[v.inflated(5) for v in pv.values()],
    ))
    mediastinum = Clipped(envelope, lambda x, y, z: np.maximum(cavity.inflated(10).sdf(x, y, z), above_diaphragm(x, y, z) * 0 + z - Z(200)))

    # --- paint order ------------------------------------------------------------------------------
    S: list[Structure] = [
        Structure("body", "subcutaneous_fat", body),
        Structure("skin", "skin", Rind(body, 2.0)),
        Structure("muscle", "muscle", muscle_outline, over=("subcutaneous_fat",)),
        Structure("abdomen", "abdominal_tissue", abdomen_cavity, over=("muscle",)),
        Structure("lungs", "lung", thorax_cavity, over=("muscle",)),
        Structure("diaphragm", "muscle", diaphragm, over=("lung", "abdominal_tissue")),
        Structure("mediastinum", "mediastinal_fat", mediastinum, over=("lung", "muscle")),
        Structure("paraspinal", "muscle", paraspinal, over=("lung", "mediastinal_fat", "subcutaneous_fat")),
        Structure("liver", "liver", liver),
        Structure("stomach", "stomach_wall", stomach),
        Structure("stomach_air", "airway_lumen", stomach_air),
        Structure("spleen", "spleen", spleen),
        Structure("heart", "cardiac_wall", heart),
        Structure("heart_blood", "cardiac_blood", heart_blood),
        Structure("left_ventricle", "myocardium", lv_outer),
        Structure("lv_cavity", "cardiac_blood", lv_cavity),
        Structure("left_atrium", "cardiac_blood", la),
    ]
    S += [Structure(n, "venous_blood", s) for n, s in pv.items()]
    S += [Structure(n, "venous_blood", s) for n, s in veins.items()]
    S += [Structure(n, "arterial_blood", s) for n, s in vessels.items()]
    S += [Structure("oesophagus", "oesophagus", oes), Structure("oesophagus_lumen", "airway_lumen", oes_lumen),
          Structure("thyroid", "thyroid", thyroid)]
    S += [Structure(n + "_wall", "airway_wall", s.inflated(1.6)) for n, s in airways.items()]
    S += [Structure(n + "_lumen", "airway_lumen", s) for n, s in airways.items()]
    S += [Structure("cartilage", "cartilage", Union(tuple(costal)), over=("muscle", "subcutaneous_fat", "lung", "mediastinal_fat")),
          Structure("discs", "cartilage", Union(tuple(discs)), over=INSIDE_BODY),
          Structure("bone", "bone_cortex", skeleton_cortex, over=INSIDE_BODY),
          Structure("marrow", "bone_marrow", skeleton_marrow, over=("bone_cortex",)),
          Structure("spinal_canal", "csf", canal, over=INSIDE_BODY)]
    if p.breasts:
        breasts = Union(tuple(Ellipsoid(np.array([s * 68 * W, -(84 * D + wall) + 8, -60]), np.array([58, 30, 50])) for s in (-1, 1)))
        S.insert(3, Structure("breasts", "breast", breasts, over=("air", "skin", "subcutaneous_fat")))
    if p.arms_down:
        for s in (-1, 1):
            xc = s * (float(cav_w[3]) + wall + 48)
            arm = Tube.through(P((xc, 20, -200), (xc, 15, 0), (xc * 0.95, 10, 130)), 44.0)
            humerus = Tube.through(P((xc, 22, -150), (xc, 18, 0), (xc * 0.95, 12, 115)), 12.0)
            S.insert(1, Structure(f"arm_{'left' if s > 0 else 'right'}", "subcutaneous_fat", arm, over=("air",)))
            S.append(Structure(f"arm_muscle_{s}", "muscle", arm.inflated(-12.0), over=("subcutaneous_fat",)))
            S.append(Structure(f"humerus_{s}", "bone_cortex", humerus))
            S.append(Structure(f"humerus_marrow_{s}", "bone_marrow", humerus.inflated(-3.0)))

    aorta_arch_pts = aorta.points[(aorta.points[:, 2] > Z(15 + dz))]
    lm = Landmarks(
        z_cricoid=Z(160.0),
        z_notch=z_notch,
        z_bcv=float(_lowest_crossing(lbcv, 0.0) - 7.0),
        z_arch_top=float(aorta_arch_pts[:, 2].max() + 13.5 * ra),
        z_arch_bottom=float(Z(31 + dz) - 12.5 * ra),
        z_azygos_low=float(Z(10) - 4.5),
        z_lpa_top=float(-3 + 9.5),
        z_carina=0.0,
        z_subcarinal_low=-40.0,
        z_ipv=-62.0,
        z_diaphragm=float(diaphragm_height(p, np.array(0.0), np.array(20.0))),
        x_ligamentum=17.0,
    )
    roots = {
        "R": [rul.points[-1], rml.points[-1], rll.points[-1], rpa.points[-1], pv["pv_right_superior"].points[0], pv["pv_right_inferior"].points[0]],
        "L": [lul.points[-1], lll.points[-1], ling.points[-1], lpa.points[-1], pv["pv_left_superior"].points[0], pv["pv_left_inferior"].points[0]],
    }
    return Anatomy(p, S, organs, cavity, body, mediastinum, lm, roots)


def _lowest_crossing(tube: Tube, x: float) -> float:
    """Height of a tube's centreline where it crosses the sagittal plane at `x`."""
    pts = tube.points
    for a, b in zip(pts[:-1], pts[1:]):
        if (a[0] - x) * (b[0] - x) <= 0 and a[0] != b[0]:
            t = (x - a[0]) / (b[0] - a[0])
            return float(a[2] + t * (b[2] - a[2]))
    return float(pts[:, 2].min())


def lung_vessel_tree(anatomy: Anatomy, rng: np.random.Generator, generations: int = 6) -> list[Tube]:
    """Pulmonary vessel branches growing from the hilar roots into the lungs, generation by generation."""
    cav, env, p = anatomy.cavity, anatomy.envelope, anatomy.params

    def in_lung(q: np.ndarray) -> np.ndarray:
        x, y, z = q[:, 0], q[:, 1], q[:, 2]
        return (cav.sdf(x, y, z) < -4) & (env.sdf(x, y, z) > 2) & (z > diaphragm_height(p, x, y) + 4)

    tips = []
    for side, roots in anatomy.lung_vessel_roots.items():
        hilum = np.array([-28.0 if side == "R" else 30.0, 6.0, -22.0])
        tips += [(np.asarray(r, float), np.asarray(r, float) - hilum) for r in roots]
    start = np.array([t[0] for t in tips])
    direction = np.array([t[1] for t in tips])
    radius = np.full(len(tips), 4.5)
    tubes: list[Tube] = []
    for gen in range(generations + 1):
        if len(start) == 0:
            break
        direction = direction / np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-6)
        length = rng.uniform(14, 26, len(start)) * (1.0 - 0.07 * gen)
        end = start + length[:, None] * direction
        ok = in_lung(end)
        half = start + 0.5 * length[:, None] * direction
        end = np.where(ok[:, None], end, half)
        ok |= in_lung(half)
        start, end, direction, radius = start[ok], end[ok], direction[ok], radius[ok]
        tubes += [Tube(np.array([a, b]), np.array([r, r * 0.85])) for a, b, r in zip(start, end, radius)]
        grow = radius * 0.72 >= 0.8
        start = np.repeat(end[grow], 2, axis=0)
        direction = np.repeat(direction[grow], 2, axis=0) + rng.normal(0, 0.45, (2 * int(grow.sum()), 3))
        radius = np.repeat(radius[grow] * 0.72, 2)
    return tubes
