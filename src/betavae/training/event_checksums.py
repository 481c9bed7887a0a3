"""The checksums of TensorBoard's event records, computed in C.

TensorBoard's writer (without TensorFlow installed) computes each record's masked CRC-32C in
pure Python, about 0.27 µs a byte, on its writer thread, which holds the GIL meanwhile. One set
of the validation pictures of 28-pixel digits is about 350 KB of PNG, so its checksums took
about 95 ms from the training thread, more than drawing the pictures did. google-crc32c
computes the same checksum in C, in under 0.1 ms for such a set, so the files are unchanged
byte for byte.
"""

import google_crc32c
from tensorboard.summary.writer import record_writer

_MASK = 0xFFFFFFFF
# TFRecord's mask: the CRC rotated right by 15 bits, plus this constant.
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """The checksum TFRecord stores after a record's length and after its data."""
    crc = google_crc32c.value(data)
    rotated = ((crc >> 15) | (crc << 17)) & _MASK
    return (rotated + _MASK_DELTA) & _MASK


def checksum_records_in_c() -> None:
    """Make TensorBoard's record writer use `masked_crc32c`, for every event file this
    process writes from now on."""
    record_writer.masked_crc32c = masked_crc32c
