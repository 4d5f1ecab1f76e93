"""pwconv simulation: cocotb testbenches and runners, and an Amaranth-simulator driver."""
