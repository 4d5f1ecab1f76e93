"""pwconv host driver: layer programs, device backends and the NumPy API."""
