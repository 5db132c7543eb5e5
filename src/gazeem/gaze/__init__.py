"""The grid-latent gaze EM: data access, windows, the estimator and its output."""
