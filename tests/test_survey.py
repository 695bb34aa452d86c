import numpy as np
import pytest

from tfgal import survey
from tfgal.errors import ConfigError


def test_sky_levels_follow_zero_points():
    # 10^(-0.4 (m_sky - zp)) e-/s per arcsec^2 times 0.04 arcsec^2 per pixel.
    np.testing.assert_allclose(survey.sky_vector(), [10.05, 23.02, 33.27], rtol=1e-3)


def test_mag_flux_round_trip():
    flux = survey.mag_to_flux(24.0, "r")
    assert flux == pytest.approx(43.65, rel=1e-3)
    assert survey.flux_to_mag(flux, "r") == pytest.approx(24.0)


def test_named_depths():
    assert survey.Y10.exposure_s == (2400.0, 5520.0, 5520.0)
    assert survey.Y1.exposure_s == (240.0, 552.0, 552.0)
    assert survey.Y1.years == pytest.approx(1.0)


@pytest.mark.parametrize("spec, exposure", [
    ("Y10", (2400, 5520, 5520)), ("y1", (240, 552, 552)), ("Y3", (720, 1656, 1656)),
    ("0.5y", (120, 276, 276)), (2, (480, 1104, 1104)), ("exp:100,200,300", (100, 200, 300)),
    ("exp:60", (60, 60, 60))])
def test_depth_parse(spec, exposure):
    np.testing.assert_allclose(survey.Depth.parse(spec).exposure_s, exposure)


@pytest.mark.parametrize("spec", ["Y-1", "deep", "exp:1,2", "exp:a,b,c", "0y", "exp:0"])
def test_depth_parse_rejects(spec):
    with pytest.raises(ConfigError):
        survey.Depth.parse(spec)


def test_depth_json_round_trip():
    depth = survey.Depth.parse("Y3")
    assert survey.Depth.from_json(depth.to_json()) == depth
