"""pwconv gateware: the systolic array, its sequencer, requantizer and top level."""
