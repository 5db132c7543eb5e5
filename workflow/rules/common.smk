SESSIONS = list(config["sessions"])
