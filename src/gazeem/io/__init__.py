"""Reading, validating and writing session datasets."""

from gazeem.io.dataset import validate_session, write_netcdf_atomic

__all__ = ["validate_session", "write_netcdf_atomic"]
