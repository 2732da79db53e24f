"""read_header: a GGUF file's scalar metadata and tensor table, for listings, in milliseconds.

gguf.GGUFReader parses every metadata value into numpy views, one Python call per element of every array: for a
150k-token vocabulary and its merges that is most of a second or more. A listing needs none of the arrays, so this
reader (the gguf library's, with that one method replaced) steps over each array by its length and keeps only the
scalars and strings; the tensor table (names, shapes, types) is read as gguf reads it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFValueType as V

from ..errors import ModelLoadError
from ..gguf_file import MAGIC, _Reader


class _HeaderReader(_Reader):
    def _get_field_parts(self, orig_offs, raw_type):
        if V(raw_type) != V.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        item, count = self._get(orig_offs, np.uint32), self._get(orig_offs + 4, np.uint64)
        item_type, offs = V(item[0]), orig_offs + 12
        if item_type == V.STRING:  # each string is its uint64 length, then its bytes
            order = "little" if (self.byte_order == "I") == np.little_endian else "big"
            data = memoryview(self.data.view(np.ndarray))
            for _ in range(int(count[0])):
                offs += 8 + int.from_bytes(data[offs : offs + 8], order)
        elif item_type in self.gguf_scalar_to_np:
            offs += np.dtype(self.gguf_scalar_to_np[item_type]).itemsize * int(count[0])
        else:  # arrays of arrays: rare, let gguf walk them
            return super()._get_field_parts(orig_offs, raw_type)
        return offs - orig_offs, [item, count], [], [V.ARRAY, item_type]  # read back as an empty list


def read_header(path: Path) -> tuple[dict, list]:
    """(metadata without its arrays, the gguf library's tensor list) of a GGUF file; ModelLoadError if it is not
    one or cannot be read."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file")
    try:
        reader = _HeaderReader(path)
        meta = {name: field.contents() for name, field in reader.fields.items()}
    except (ValueError, IndexError, KeyError, OverflowError, TypeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path} is truncated or corrupt ({err})") from None
    return meta, reader.tensors
