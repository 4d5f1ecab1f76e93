"""The layer program's 64-byte op descriptor as a StructLayout (from format.DESCRIPTOR_FIELDS)."""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from pwconv.host.compiler import format as fmt

__all__ = ["descriptor_layout", "DESCRIPTOR_BITS", "OP_CODES"]

#: Bits of one descriptor (format.DESCRIPTOR_BYTES of them, little-endian).
DESCRIPTOR_BITS = 8 * fmt.DESCRIPTOR_BYTES
#: Op kind codes, as format.OPS.
OP_CODES = dict(fmt.OPS)


def descriptor_layout():
    """The StructLayout of one descriptor, field for field from host/compiler/format.py
    ``DESCRIPTOR_FIELDS`` (the single source of truth: a field moved there moves here). A
    ``data.View`` of it over the 512 bits the DMA fetched (byte 0 in bits 0..7) decodes it.

    Raises
    ------
    ValueError
        The table does not tile the 512 bits in order (a gap or an overlap).
    """
    fields = {}
    at = 0
    for name, offset, width, is_signed in fmt.DESCRIPTOR_FIELDS:
        if offset != at:
            raise ValueError(f"Descriptor field {name} is at bit {offset}, expected {at} (the "
                             f"table must tile the descriptor in order)")
        fields[name] = signed(width) if is_signed else unsigned(width)
        at += width
    if at != DESCRIPTOR_BITS:
        raise ValueError(f"Descriptor fields cover {at} bits, not {DESCRIPTOR_BITS}")
    return data.StructLayout(fields)
