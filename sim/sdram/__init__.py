"""The SDR SDRAM chip model for simulation: datasheet timing (parts), the Verilog model and its cocotb bench."""
