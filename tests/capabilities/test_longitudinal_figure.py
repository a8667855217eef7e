"""The longitudinal figure's scale follows the groups that have knees enough for a CI: a
two-knee group's t interval (many times wider than any other line) gets no band, so it no
longer flattens the panel (found on an 8-subject rendered cohort whose KL >= 2 group had 2
knees: every line was drawn at zero on a +-3 mm axis)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kneescope.capabilities.longitudinal.figures import MIN_BAND_KNEES, change_figure


def _rows(
    group: str, n: int, means: list[float], half_widths: list[float]
) -> list[dict[str, object]]:
    return [
        {
            "biomarker": "we2008_cMFTC_ThCtAB_mm",
            "unit": "mm",
            "group": group,
            "visit": visit,
            "months_mean": months,
            "n": n,
            "mean_change": mean,
            "mean_ci_low": mean - half,
            "mean_ci_high": mean + half,
        }
        for visit, months, mean, half in zip(
            ("V01", "V03"), (12.0, 24.0), means, half_widths, strict=True
        )
    ]


def test_a_group_with_too_few_knees_gets_no_band_and_does_not_set_the_scale() -> None:
    summary = pd.DataFrame(
        _rows("all", 40, [-0.05, -0.10], [0.02, 0.03])
        + _rows("KL>=2", 2, [-0.20, -0.25], [3.0, 3.5])  # t(1) interval of 2 knees
        + _rows(f"KL{MIN_BAND_KNEES}", MIN_BAND_KNEES, [-0.02, -0.04], [0.05, 0.06])
    )
    fig = change_figure(summary, ["we2008_cMFTC_ThCtAB_mm"])
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert -0.5 < low < -0.25 and 0.0 < high < 0.5  # the means and the real bands, not +-3.5
    bands = [np.asarray(c.get_paths()[0].vertices) for c in ax.collections if c.get_paths()]
    lows = sorted(float(v[:, 1].min()) for v in bands)
    # bands of "all" (down to -0.13) and of the group of MIN_BAND_KNEES knees (-0.10); none
    # of the two-knee group (down to -3.75)
    assert len(bands) == 2 and np.allclose(lows, [-0.13, -0.10])
    legend = ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["all (n 40)", "KL>=2 (n 2)", f"KL{MIN_BAND_KNEES} (n {MIN_BAND_KNEES})"]
