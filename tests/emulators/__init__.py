"""Local emulators of the external APIs, enforcing their documented contracts."""
