"""Board memory: the SDRAM behind LiteDRAM, its bring-up, the DMA engines and their arbiter.

This room owns everything between the board's SDRAM chip and the streams the rest of the
gateware consumes:

- :mod:`.port` -- :class:`NativePortSignature`, the one memory-port interface every block here
  speaks (LiteDRAM's native user port, as streams);
- the LiteDRAM controller wrapper and its gateware init sequencer (the only modules that name
  LiteDRAM's signals): :mod:`.litedram_core` (generation), :mod:`.sdram`
  (:class:`~.sdram.SDRAMController`), :mod:`.sdram_init`; :mod:`.port_cdc` carries a port to a
  memory in another clock domain;
- the DMA reader and writer (2-D byte requests to and from streams) and the arbiter that lets
  several of them share one port.
"""
