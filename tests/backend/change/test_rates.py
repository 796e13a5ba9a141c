"""DSAS statistics against numbers worked out by hand, and on series built to known rates."""

from __future__ import annotations

import numpy as np
import pytest

from backend.change.rates import change_statistics, default_uncertainty

# Four dates at 2000.0, 2001.0, 2002.0, 2004.0 (decimal years), positions 0, 2, 3, 8 m,
# uncertainties 1, 1, 2, 2 m (WLR weights 1/e^2 = 1, 1, 0.25, 0.25).
YEARS = np.array([2000.0, 2001.0, 2002.0, 2004.0])
POS = np.array([[0.0, 2.0, 3.0, 8.0]])
SIGMA = np.array([1.0, 1.0, 2.0, 2.0])


def test_hand_computed_small_example():
    s = change_statistics(POS, YEARS, SIGMA)
    # SCE: farthest minus closest = 8 - 0; NSM: youngest minus oldest = 8 - 0
    assert s["sce"][0] == 8.0 and s["nsm"][0] == 8.0
    # EPR = NSM / (2004 - 2000) = 2 m/yr; its uncertainty sqrt(1^2 + 2^2) / 4
    assert s["epr"][0] == 2.0
    assert s["epr_unc"][0] == pytest.approx(np.sqrt(5.0) / 4.0)
    # LRR: t - 2000 = 0, 1, 2, 4: mean 1.75, Sxx = 8.75; mean y 3.25, Sxy = 17.25
    # slope 17.25 / 8.75 = 69/35; residuals 0.2, 0.2286, -0.7429, 0.3143: SSE = 26/35;
    # SST = 34.75: R^2 = 1 - (26/35)/34.75; SE of the estimate sqrt(SSE/2) = sqrt(13/35);
    # SE of the slope sqrt(13/35)/sqrt(8.75); CI95 = t(0.975, 2) = 4.302653 x that
    assert s["lrr"][0] == pytest.approx(69 / 35)
    assert s["lrr_r2"][0] == pytest.approx(1 - (26 / 35) / 34.75)
    assert s["lrr_se"][0] == pytest.approx(np.sqrt(13 / 35))
    assert s["lrr_se_slope"][0] == pytest.approx(np.sqrt(13 / 35) / np.sqrt(8.75))
    assert s["lrr_ci95"][0] == pytest.approx(4.302653 * 0.2060315, rel=1e-6)
    assert s["lrr_intercept"][0] + s["lrr"][0] * 2000.0 == pytest.approx(-0.2)
    # WLR: sum w = 2.5; weighted mean t 1.0, y 1.9; Sxx_w = 3.5, Sxy_w = 6.75: 27/14;
    # weighted SSE 0.2071429, R^2_w 0.9843370, SE of the slope sqrt(SSE_w/2)/sqrt(3.5)
    assert s["wlr"][0] == pytest.approx(27 / 14)
    assert s["wlr_r2"][0] == pytest.approx(0.9843370, abs=1e-7)
    assert s["wlr_se_slope"][0] == pytest.approx(0.1720228, abs=1e-7)
    assert s["wlr_ci95"][0] == pytest.approx(4.302653 * 0.1720228, rel=1e-6)
    assert s["n_dates"][0] == 4
    assert s["date_first"][0] == 2000.0 and s["date_last"][0] == 2004.0


def test_missing_dates_are_skipped_not_zero():
    p = np.array([[np.nan, 2.0, 3.0, 8.0, np.nan], [np.nan] * 5, [5.0] + [np.nan] * 4])
    years = np.array([1999.0, 2001.0, 2002.0, 2004.0, 2006.0])
    s = change_statistics(p, years, 1.0)
    assert s["n_dates"].tolist() == [3, 0, 1]
    assert s["nsm"][0] == 6.0 and s["epr"][0] == 2.0  # 8 - 2 over 2001 -> 2004
    assert s["sce"][0] == 6.0
    # one or no date: nothing to compute, NaN (never 0)
    for k in ("nsm", "epr", "lrr", "wlr", "sce"):
        assert np.isnan(s[k][1])
    assert np.isnan(s["nsm"][2]) and np.isnan(s["lrr"][2]) and s["sce"][2] == 0.0
    # two dates: a rate, but no R^2, error or interval
    two = change_statistics(np.array([[0.0, 4.0]]), np.array([2000.0, 2002.0]), 1.0)
    assert two["lrr"][0] == 2.0 and np.isnan(two["lrr_ci95"][0]) and np.isnan(two["lrr_r2"][0])


def test_known_rates_with_noise_come_back_within_their_interval():
    rng = np.random.default_rng(1)
    years = 2016.5 + np.sort(rng.uniform(0, 6, 40))
    rates = np.linspace(-5, 5, 200)
    truth = rates[:, None] * (years - years[0])[None, :]
    p = truth + rng.normal(0, 3.0, truth.shape)
    p[rng.random(p.shape) < 0.2] = np.nan  # gaps
    s = change_statistics(p, years, 3.0)
    inside = np.abs(s["lrr"] - rates) <= s["lrr_ci95"]
    assert inside.mean() > 0.9  # a 95 % interval: about 95 % of them hold the true rate
    assert np.allclose(s["wlr"], s["lrr"])  # equal weights: WLR is LRR
    # SCE, NSM, EPR are exact functions of the points kept
    valid = ~np.isnan(p)
    for i in (0, 57, 199):
        kept = p[i][valid[i]]
        t = years[valid[i]]
        assert s["sce"][i] == kept.max() - kept.min()
        assert s["nsm"][i] == kept[-1] - kept[0]
        assert s["epr"][i] == pytest.approx((kept[-1] - kept[0]) / (t[-1] - t[0]))


def test_default_uncertainty_grows_with_cloud():
    assert default_uncertainty(
        np.array([10.0, 10.0, 20.0]), np.array([0.0, 0.5, np.nan])
    ).tolist() == [
        10.0,
        20.0,
        20.0,
    ]
