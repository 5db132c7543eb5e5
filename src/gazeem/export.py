"""The export stage: write the corrected gaze back into a copy of the source NWB file.

The copy gets, in ``processing['behavior']``, an ``EyeTracking`` container named
``EyeTrackingCorrected`` with ``SpatialSeries`` sharing the fit's bin timestamps:
``corrected_gaze`` (posterior mean, degrees), ``posterior_sd`` (posterior SD per axis,
degrees) and, for each stored level (68 and 95%), ``credible_lower_68``,
``credible_upper_68``, … (the posterior's own central interval per axis, degrees; not
``mean ± z·SD``). NaN marks bins outside fixations. The source file is never opened for
writing; the copy is validated with pynwb before it is renamed into place.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import h5py
import numpy as np

from gazeem import __version__
from gazeem.errors import GazeemError
from gazeem.io.files import atomic_output, check_readable_hdf5, open_netcdf, short_message

log = logging.getLogger("gazeem.export")
CONTAINER = "EyeTrackingCorrected"


def export_nwb(source, fit, output) -> Path:
    """Copy ``source`` (NWB) to ``output`` with the fit's corrected gaze added."""
    from pynwb import NWBHDF5IO, validate
    from pynwb.behavior import EyeTracking, SpatialSeries

    source, output = Path(source), Path(output)
    check_readable_hdf5(source, "NWB file")
    if source.resolve() == output.resolve():
        raise GazeemError(
            f"{output}: the export must not overwrite its source; choose another output path."
        )
    _refuse_external_links(source)
    with open_netcdf(fit, "fit result", ("gaze_mean", "gaze_sd")) as ds:
        t = ds["time"].values.astype(np.float64)
        mean = ds["gaze_mean"].values.astype(np.float64)
        sd = ds["gaze_sd"].values.astype(np.float64)
        version = ds.attrs.get("gazeem_version", "?")
        intervals = []
        if "gaze_lower" in ds:
            for i, level in enumerate(ds["level"].values):
                for end in ("lower", "upper"):
                    values = ds[f"gaze_{end}"].values[..., i].astype(np.float64)
                    intervals.append((f"credible_{end}_{round(100 * level)}", level, end, values))
    with atomic_output(output) as tmp:
        shutil.copyfile(source, tmp)
        try:
            io = NWBHDF5IO(str(tmp), "a", load_namespaces=True)
            nwb = io.read()
        except Exception as err:  # pynwb/hdmf raise many types for truncated or foreign files
            raise GazeemError(
                f"{source}: field '/': not a readable NWB file ({type(err).__name__}: "
                f"{short_message(err)})."
            ) from None
        with io:
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
            bounds = [
                SpatialSeries(
                    name=name,
                    data=values,
                    timestamps=gaze,
                    unit="degrees",
                    reference_frame="screen centre; x right, y up",
                    description=(
                        f"{end} end per axis of the central {level:.0%} credible interval of "
                        "gaze from gazeem (the posterior's own quantiles); NaN outside fixations"
                    ),
                )
                for name, level, end, values in intervals
            ]
            behavior.add(EyeTracking(name=CONTAINER, spatial_series=[gaze, spread, *bounds]))
            io.write(nwb)
        with NWBHDF5IO(tmp, "r", load_namespaces=True) as io:
            errors = validate(io=io)
        if errors:
            raise GazeemError(f"{output}: the exported file fails NWB validation: {errors[:3]}")
    log.info("exported corrected gaze (gazeem %s) of %s into %s", __version__, fit, output)
    return output


def _refuse_external_links(source: Path) -> None:
    """Stop if the NWB file links to datasets in other files.

    The export opens its copy for appending; through an external link HDF5 would open the
    linked file too, and the export must never open anything but its own output for
    writing.
    """
    try:
        with h5py.File(source, "r") as f:
            links: list[str] = []

            def visit(name, link):
                if isinstance(link, h5py.ExternalLink):
                    links.append(f"/{name} -> {link.filename}:{link.path}")

            f.visititems_links(visit)
    except OSError as err:
        raise GazeemError(
            f"{source}: field '/': not a readable HDF5 file; it may be truncated "
            f"({short_message(err)})."
        ) from None
    if links:
        raise GazeemError(
            f"{source}: field '{links[0].split(' ')[0]}': is an HDF5 external link to another "
            f"file ({len(links)} in all, e.g. {links[0]}); gazeem exports only self-contained "
            "NWB files. Make one with `h5repack` or pynwb's export (which copies linked data)."
        )
