"""The export stage: write the corrected gaze back into a copy of the source NWB file.

The copy gets, in ``processing['behavior']``, an ``EyeTracking`` container named
``EyeTrackingCorrected`` with two ``SpatialSeries`` sharing the fit's bin timestamps:
``corrected_gaze`` (posterior mean, degrees) and ``posterior_sd`` (posterior SD per axis,
degrees). NaN marks bins outside fixations. The source file is never opened for
writing; the copy is validated with pynwb before it is renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from gazeem import __version__
from gazeem.errors import GazeemError

log = logging.getLogger("gazeem.export")
CONTAINER = "EyeTrackingCorrected"


def export_nwb(source, fit, output) -> Path:
    """Copy ``source`` (NWB) to ``output`` with the fit's corrected gaze added."""
    from pynwb import NWBHDF5IO, validate
    from pynwb.behavior import EyeTracking, SpatialSeries

    source, output = Path(source), Path(output)
    if not source.exists():
        raise GazeemError(f"{source}: no such NWB file.")
    if source.resolve() == output.resolve():
        raise GazeemError(
            f"{output}: the export must not overwrite its source; choose another output path."
        )
    with xr.open_dataset(fit, engine="h5netcdf") as ds:
        for name in ("gaze_mean", "gaze_sd"):
            if name not in ds:
                raise GazeemError(f"{fit}: field '{name}': missing; is this a gazeem fit result?")
        t = ds["time"].values.astype(np.float64)
        mean = ds["gaze_mean"].values.astype(np.float64)
        sd = ds["gaze_sd"].values.astype(np.float64)
        version = ds.attrs.get("gazeem_version", "?")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".nwb", dir=output.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        with NWBHDF5IO(tmp, "a", load_namespaces=True) as io:
            nwb = io.read()
            if "behavior" in nwb.processing:
                behavior = nwb.processing["behavior"]
            else:
                behavior = nwb.create_processing_module("behavior", "behavioural data")
            if CONTAINER in behavior.data_interfaces:
                raise GazeemError(
                    f"{source}: processing/behavior/{CONTAINER} exists already; export from the raw file."
                )
            gaze = SpatialSeries(
                name="corrected_gaze",
                data=mean,
                timestamps=t,
                unit="degrees",
                reference_frame="screen centre; x right, y up",
                description=f"posterior mean gaze from gazeem {version} (grid-latent EM); NaN outside fixations",
            )
            spread = SpatialSeries(
                name="posterior_sd",
                data=sd,
                timestamps=gaze,  # shares the timestamps of corrected_gaze
                unit="degrees",
                reference_frame="per-axis posterior standard deviation of gaze",
                description="posterior SD of gaze per axis from gazeem; NaN outside fixations",
            )
            behavior.add(EyeTracking(name=CONTAINER, spatial_series=[gaze, spread]))
            io.write(nwb)
        with NWBHDF5IO(tmp, "r", load_namespaces=True) as io:
            errors = validate(io=io)
        if errors:
            raise GazeemError(f"{output}: the exported file fails NWB validation: {errors[:3]}")
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("exported corrected gaze (gazeem %s) of %s into %s", __version__, fit, output)
    return output
