"""Publishers: where predictions go. One small interface, picked from :data:`SINKS`."""
