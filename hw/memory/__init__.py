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
  several of them share one port;
- :mod:`.bram` -- :class:`~.bram.BlockRAMMemory`, a small block-RAM memory behind the port
  (unit tests, board-sim without SDRAM); :mod:`.crc32` -- :class:`~.crc32.Crc32`, zlib's
  CRC-32 a port word per cycle (the link's MEM_CRC, :mod:`pwconv.hw.link.memory`).
"""
