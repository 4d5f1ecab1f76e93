"""Synthesis, place-and-route and reports of pwconv on real boards (YoWASP tools from pip)."""
