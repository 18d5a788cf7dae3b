"""MetaImage files as Elastix's programs read and write them: the same pixels and geometry as ITK's own MetaImageIO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nstage.geometry import Grid
from nstage.stationmap.elastix_program import parameter_file_with
from nstage.stationmap.metaimage import read_mha, write_mha

pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")  # ITK SWIG
TURN = 0.3
DIRECTION = np.array([[np.cos(TURN), -np.sin(TURN), 0.0], [np.sin(TURN), np.cos(TURN), 0.0], [0.0, 0.0, -1.0]])
GRID = Grid(shape=(4, 5, 6), spacing=(0.7, 0.8, 2.5), origin=(-10.0, 20.0, -300.0), direction=DIRECTION)


def test_itk_reads_what_is_written_here(tmp_path: Path) -> None:
    from nstage.stationmap.itk_bridge import from_itk, itk_module

    values = np.random.default_rng(0).normal(size=GRID.shape).astype(np.float32)
    back, grid = from_itk(itk_module().imread(str(write_mha(tmp_path / "a.mha", values, GRID))))
    assert np.array_equal(back, values)
    assert np.allclose(grid.direction, DIRECTION) and np.allclose(grid.origin, GRID.origin) and np.allclose(grid.spacing, GRID.spacing)


def test_a_vector_image_itk_wrote_is_read_here(tmp_path: Path) -> None:
    itk = pytest.importorskip("itk")
    field = np.random.default_rng(1).normal(size=GRID.shape + (3,)).astype(np.float32)
    image = itk.image_from_array(field, is_vector=True)
    image.SetOrigin(GRID.origin)
    image.SetSpacing(GRID.spacing)
    image.SetDirection(itk.matrix_from_array(DIRECTION))
    itk.imwrite(image, str(tmp_path / "field.mhd"))  # header and a separate .raw, as transformix writes its field
    back, grid = read_mha(tmp_path / "field.mhd")
    assert back.shape == GRID.shape + (3,) and np.array_equal(back, field)
    assert np.allclose(grid.direction, DIRECTION) and grid.shape == GRID.shape


def test_a_mask_keeps_its_type_and_a_wrong_shape_is_refused(tmp_path: Path) -> None:
    mask = np.zeros(GRID.shape, np.uint8)
    mask[1:3, 2:4, 1:5] = 1
    back, _ = read_mha(write_mha(tmp_path / "m.mha", mask, GRID))
    assert back.dtype == np.uint8 and np.array_equal(back, mask)
    with pytest.raises(ValueError, match="does not match"):
        write_mha(tmp_path / "x.mha", mask[:2], GRID)


def test_parameter_overrides_replace_a_setting_or_add_it(tmp_path: Path) -> None:
    source = tmp_path / "p.txt"
    source.write_text('(Transform "BSplineTransform")\n(ResampleInterpolator "FinalLinearInterpolator")\n// comment\n')
    text = parameter_file_with(source, tmp_path / "q.txt", {"ResampleInterpolator": '"FinalBSplineInterpolator"',
                                                              "FinalBSplineInterpolationOrder": "1"}).read_text()
    assert "FinalLinearInterpolator" not in text and '(ResampleInterpolator "FinalBSplineInterpolator")' in text
    assert "(FinalBSplineInterpolationOrder 1)" in text and '(Transform "BSplineTransform")' in text

