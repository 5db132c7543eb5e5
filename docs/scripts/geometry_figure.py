"""Draw docs/img/geometry.png: the screen, the stimulus, the gaze, the tracker's reading,
the receptive-field region and the patch, with every convention gazeem uses.

Run: .venv/bin/python docs/scripts/geometry_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

from gazeem.coords import StimulusGeometry

# demo3's geometry: 48 px stimulus at 20 px/deg centred at (2, -1) deg, fields 1.5 deg
# right of and 1 deg below the gaze
GEOM = StimulusGeometry(20.0, (2.0, -1.0), (48, 48))
RF = (1.5, -1.0)
GAZE = (0.2, 0.1)
OFFSET_PX = (4.0, -3.0)  # the tracker's offset b, pixels (x right, y down)
PATCH_PX = 16


def main() -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
    ppd = GEOM.ppd
    half = GEOM.half_extent_deg
    cx, cy = GEOM.center_deg
    ax.add_patch(Rectangle((-3.5, -3.0), 7.5, 5.5, fill=False, ec="0.6", lw=0.8, ls="--"))
    ax.text(-3.4, 2.35, "screen (degrees: x right, y up)", fontsize=7, color="0.4")
    ax.add_patch(
        Rectangle((cx - half[0], cy - half[1]), 2 * half[0], 2 * half[1], fc="#f0f0f0", ec="k")
    )
    ax.text(cx - half[0] + 0.05, cy + half[1] - 0.15, "stimulus", fontsize=7, va="top")
    # stimulus pixels: x = column, y = row (down); pixel (0, 0) is the top-left's centre
    x0, y0 = cx - half[0] + 0.5 / ppd, cy + half[1] - 0.5 / ppd
    ax.plot(x0, y0, "s", ms=3, color="k")
    ax.annotate(
        "stimulus px (0, 0): x = column,\ny = row (down)",
        (x0, y0),
        (x0 + 0.35, y0 + 0.55),
        fontsize=6,
        arrowprops=dict(arrowstyle="-", lw=0.5),
    )
    ax.plot(cx, cy, "+", color="k", ms=7)
    ax.annotate(
        "stim_center_x_deg, stim_center_y_deg\n(centred px: stimulus px − centre)",
        (cx, cy),
        (cx + 0.2, cy - 0.7),
        fontsize=6,
        arrowprops=dict(arrowstyle="-", lw=0.5),
    )
    # the gaze, the tracker's reading and the fields' region
    gx, gy = GAZE
    ax.plot(gx, gy, "o", color="#1b9e77", ms=6, label="true gaze z")
    rx, ry = gx + OFFSET_PX[0] / ppd, gy - OFFSET_PX[1] / ppd
    ax.plot(rx, ry, "x", color="#d95f02", ms=7, mew=1.5, label="tracker reading ẑ ≈ A z + b")
    fx, fy = gx + RF[0], gy + RF[1]
    size = PATCH_PX / ppd
    ax.add_patch(
        Rectangle((fx - size / 2, fy - size / 2), size, size, fill=False, ec="#7570b3", lw=1.2)
    )
    ax.plot(fx, fy, "D", color="#7570b3", ms=4, label="receptive-field region (patch P×P)")
    ax.add_patch(
        FancyArrowPatch((gx, gy), (fx, fy), arrowstyle="->", mutation_scale=8, color="#7570b3")
    )
    ax.text((gx + fx) / 2 + 0.05, (gy + fy) / 2 + 0.1, "rf_x_deg, rf_y_deg", fontsize=6,
            color="#7570b3")
    ax.add_patch(
        FancyArrowPatch((gx, gy), (rx, ry), arrowstyle="->", mutation_scale=8, color="#d95f02")
    )
    ax.text(rx + 0.05, ry + 0.05, "b (+ error, σ)", fontsize=6, color="#d95f02")
    ax.text(
        -3.4,
        -2.9,
        "The gaze may lie off the stimulus; the patch is cut at gaze + (rf_x_deg, rf_y_deg),\n"
        "0 contrast outside the stimulus. Tracker model in centred px (y down): ẑ = A (z − z̄) "
        "+ z̄ + b + noise.",
        fontsize=6,
        va="bottom",
    )
    ax.set_xlim(-3.6, 4.1)
    ax.set_ylim(-3.1, 2.6)
    ax.set_aspect("equal")
    ax.set_xlabel("x (deg, right)")
    ax.set_ylabel("y (deg, up)")
    ax.legend(loc="upper right", fontsize=6, frameon=False)
    out = Path(__file__).resolve().parents[1] / "img" / "geometry.png"
    fig.savefig(out, dpi=200)
    print(out)


if __name__ == "__main__":
    main()
