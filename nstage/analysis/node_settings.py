"""The node reader's thresholds (`config/analysis.json` "nodes"), read once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nstage.analysis.config import analysis_config


@dataclass(frozen=True)
class NodeSettings:
    """`config/analysis.json` "nodes": every threshold of the node reader."""

    margin_mm: float
    core_hu: float
    grow_mm: float
    context_mm: float
    smooth_sigma_mm: float
    signs_sigma_mm: float
    soft_tissue_hu: tuple[float, float]
    calcium_hu: float
    fat_hu: tuple[float, float]
    min_short_axis_mm: float
    max_long_axis_mm: float
    max_volume_ml: float
    min_inside_fraction: float
    max_elongation: float
    surround_mm: float
    min_fat_surround: float
    min_fat_in_surround: float
    surround_fat_hu: tuple[float, float]
    air_ring_mm: tuple[float, float]
    air_hu: float
    max_air_around: float
    bone_min_volume_ml: float
    max_bone_around: float
    split_min_radius_mm: float
    split_closing_mm: float
    pet_margin_mm: float
    focus_min_suv: float
    focus_min_blood_pool_ratio: float
    focus_radius_mm: float
    focus_background_mm: tuple[float, float]
    focus_min_contrast: float
    calcified_min_fraction: float
    calcified_min_volume_mm3: float
    calcified_min_depth_mm: float
    fat_min_volume_ml: float
    fat_hu_mean_max: float
    fat_min_notch_fraction: float
    fat_notch_min_short_axis_mm: float
    low_density_drop_hu: float
    low_density_min_short_axis_mm: float
    avid_visual_grade: int
    index_suv_tolerance: float
    grade_ratios: tuple[float, float, float, float]
    max_nodes_per_station: int

    @classmethod
    def from_config(cls, c: Mapping[str, Any]) -> NodeSettings:
        g = c["visual_grade_blood_pool_ratios"]
        return cls(
            margin_mm=float(c["margin_mm"]), core_hu=float(c["core_hu"]), grow_mm=float(c["grow_mm"]), context_mm=float(c["context_mm"]), smooth_sigma_mm=float(c["smooth_sigma_mm"]),
            signs_sigma_mm=float(c["signs_sigma_mm"]),
            soft_tissue_hu=(float(c["soft_tissue_hu"][0]), float(c["soft_tissue_hu"][1])), calcium_hu=float(c["calcium_hu"]),
            fat_hu=(float(c["fat_hu"][0]), float(c["fat_hu"][1])), min_short_axis_mm=float(c["min_short_axis_mm"]),
            max_long_axis_mm=float(c["max_long_axis_mm"]), max_volume_ml=float(c["max_volume_ml"]),
            min_inside_fraction=float(c["min_inside_fraction"]), max_elongation=float(c["max_elongation"]),
            surround_mm=float(c["surround_mm"]), min_fat_surround=float(c["min_fat_surround"]),
            min_fat_in_surround=float(c["min_fat_in_surround"]), surround_fat_hu=(float(c["surround_fat_hu"][0]), float(c["surround_fat_hu"][1])),
            air_ring_mm=(float(c["air_ring_mm"][0]), float(c["air_ring_mm"][1])), air_hu=float(c["air_hu"]), max_air_around=float(c["max_air_around"]),
            bone_min_volume_ml=float(c["bone_min_volume_ml"]), max_bone_around=float(c["max_bone_around"]),
            split_min_radius_mm=float(c["split_min_radius_mm"]), split_closing_mm=float(c["split_closing_mm"]),
            pet_margin_mm=float(c["pet_margin_mm"]), focus_min_suv=float(c["focus_min_suv"]),
            focus_min_blood_pool_ratio=float(c["focus_min_blood_pool_ratio"]), focus_radius_mm=float(c["focus_radius_mm"]),
            focus_background_mm=(float(c["focus_background_mm"][0]), float(c["focus_background_mm"][1])), focus_min_contrast=float(c["focus_min_contrast"]),
            calcified_min_fraction=float(c["calcified_min_fraction"]), calcified_min_volume_mm3=float(c["calcified_min_volume_mm3"]),
            calcified_min_depth_mm=float(c["calcified_min_depth_mm"]),
            fat_min_volume_ml=float(c["fat_min_volume_ml"]), fat_min_notch_fraction=float(c["fat_min_notch_fraction"]),
            fat_notch_min_short_axis_mm=float(c["fat_notch_min_short_axis_mm"]),
            fat_hu_mean_max=float(c["fat_hu_mean_max"]), low_density_drop_hu=float(c["low_density_drop_hu"]),
            low_density_min_short_axis_mm=float(c["low_density_min_short_axis_mm"]), avid_visual_grade=int(c["avid_visual_grade"]),
            index_suv_tolerance=float(c["index_suv_tolerance"]),
            grade_ratios=(float(g["absent_below"]), float(g["below_below"]), float(g["equal_up_to"]), float(g["above_up_to"])),
            max_nodes_per_station=int(c["max_nodes_per_station"]),
        )


@lru_cache(maxsize=1)
def node_settings() -> NodeSettings:
    return NodeSettings.from_config(analysis_config()["nodes"])
