"""The SDR SDRAM chip model for simulation: datasheet timing, the Verilog model, its cocotb bench.

- :mod:`.parts` -- the ULX3S parts' datasheet timing in one table, and
  ``model_parameters(part, clock_hz)``: the Verilog parameters (cycles, rounded up);
- ``sdram_model.v`` (:data:`MODEL`) -- the behavioural, timing-checked model: ``sdram_model``
  (split DQ: ``dq_i``/``dq_oe`` in, ``dq_o``/``dq_o_en`` out) and ``sdram_model_inout`` (one
  ``inout [15:0] dq``); its header states the clocking contract, the plusargs (backdoor load
  and dump, shortened checks) and every rule it checks;
- :mod:`.run` and ``cocotb_sdram_model.py`` -- its cocotb bench and runner
  (tests/test_sim_sdram_model.py).

Wiring it into a board simulation (one clock domain with the controller's SDRAM side)::

    from pwconv.sim.sdram import MODEL
    from pwconv.sim.sdram.parts import model_parameters
    params = model_parameters("MT48LC16M16A2-6A", 100e6)   # {"T_RCD": 2, ...}
    # add MODEL to the simulator's sources and instantiate sdram_model with these parameters
    # (Verilog: #(.T_RCD(2), ...); Amaranth: Instance("sdram_model", p_T_RCD=2, ...)).

The model stops the simulation ($fatal, nonzero exit) on the first violation unless
CHECKS_FATAL=0 or +sdram_warn_only; each violation is one line
``sdram_model: <rule> violated: ... at cycle N``.
"""

from pathlib import Path

__all__ = ["MODEL"]

#: The Verilog source of ``sdram_model`` and ``sdram_model_inout``.
MODEL = Path(__file__).with_name("sdram_model.v")
