"""Arrays in the files data sets are published as (.npz, HDF5), read without loading what is
not used: the image arrays of these files are gigabytes (3D Shapes 5.9 GB, MPI3D 12.7 GB).

An uncompressed .npz member is memory-mapped (NumPy's own `np.load(mmap_mode=)` ignores the
mode for .npz archives, so the member's offset is found here); a compressed one cannot be read
at an offset and is decompressed once, row chunk by row chunk, optionally packed to one bit a
pixel; an HDF5 dataset is read by h5py, row by row. Files are opened on first use in each
process (a DataLoader worker): an h5py handle does not survive a fork, and a pickled memmap
(as a spawned worker gets it) would be a copy of the whole array.

Every fault of a file (missing, not the format, an array missing or of another shape) is a
`UserError` naming `data.path`, what was found, and which published file is expected.
"""

import math
import os
import struct
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from betavae.errors import UserError

# One spec a dimension: a size the array must have, or None for "any" (the image count).
Shape = tuple[int | None, ...]

# The dtypes an array may have besides "uint8", by the word a message uses for them (NumPy's
# kind codes).
KINDS = {"integer": "iu", "numeric": "iuf"}
# Rows decompressed at a time: a few tens of MB of temporaries, whatever the file.
_STREAM_BYTES = 2**25
# The fixed part of a zip local file header, ending with the name and extra-field lengths.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


class PublishedFile(ABC):
    """A file a data set is published as; `published` says which one, for every message."""

    def __init__(self, path: Path, published: str) -> None:
        self.path = path
        self.published = published
        if not path.is_file():
            raise self.error("no such file")

    def error(self, problem: str) -> UserError:
        return UserError(f"data.path={self.path}: {problem}; {self.published}")

    def check(self, name: str, shape: Shape, kind: str) -> tuple[int, ...]:
        """The shape of array `name`, which must match `shape` and have a dtype of `kind`
        ("uint8", or one of `KINDS`)."""
        found_shape, dtype = self._header(name)
        ok_dtype = dtype == np.uint8 if kind == "uint8" else dtype.kind in KINDS[kind]
        ok_shape = len(found_shape) == len(shape) and all(
            want is None or want == got for want, got in zip(shape, found_shape, strict=True)
        )
        if not (ok_dtype and ok_shape):
            wanted = "x".join("N" if size is None else str(size) for size in shape)
            found = "x".join(map(str, found_shape))
            raise self.error(f"'{name}' is {dtype} {found}, not {kind} {wanted}")
        return found_shape

    def load(self, name: str, shape: Shape, kind: str) -> np.ndarray:
        """A whole (small) array, checked."""
        self.check(name, shape, kind)
        return self._load(name)

    def rows(self, name: str, shape: Shape, pack_bits: bool = False) -> "Rows":
        """Row access to a (large) uint8 image array, checked; `pack_bits` keeps binary images
        at one bit a pixel (any non-zero pixel a 1) when they have to be held in memory."""
        found = self.check(name, shape, "uint8")
        return self._rows(name, found, pack_bits)

    def _missing(self, name: str, names: list[str]) -> UserError:
        present = ", ".join(f"'{n}'" for n in names) or "nothing"
        return self.error(f"no array '{name}' (it has {present})")

    @abstractmethod
    def _header(self, name: str) -> tuple[tuple[int, ...], np.dtype]: ...

    @abstractmethod
    def _load(self, name: str) -> np.ndarray: ...

    @abstractmethod
    def _rows(self, name: str, shape: tuple[int, ...], pack_bits: bool) -> "Rows": ...


class NpzFile(PublishedFile):
    def __init__(self, path: Path, published: str) -> None:
        super().__init__(path, published)
        try:
            with zipfile.ZipFile(path) as archive:
                self._members = {
                    info.filename.removesuffix(".npy"): info for info in archive.infolist()
                }
        except (zipfile.BadZipFile, OSError) as err:
            raise self.error(f"not an .npz file ({err})") from err

    def _member(self, name: str) -> zipfile.ZipInfo:
        if name not in self._members:
            raise self._missing(name, list(self._members))
        return self._members[name]

    def _header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        shape, dtype, _ = self._read_header(self._member(name))
        return shape, dtype

    def _read_header(self, member: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, int]:
        """(shape, dtype, size of the header in bytes) of the .npy file a member is."""
        with zipfile.ZipFile(self.path) as archive, archive.open(member) as npy:
            try:
                version = np.lib.format.read_magic(npy)
                read = np.lib.format.read_array_header_1_0
                if version != (1, 0):
                    read = np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read(npy)
            except ValueError as err:
                raise self.error(f"'{member.filename}' is not a NumPy array ({err})") from err
            if fortran_order:
                raise self.error(f"'{member.filename}' is stored in Fortran order, not C order")
            return shape, dtype, npy.tell()

    def _load(self, name: str) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as arrays:
            return arrays[name]

    def _rows(self, name: str, shape: tuple[int, ...], pack_bits: bool) -> "Rows":
        member = self._member(name)
        header_size = self._read_header(member)[2]
        if member.compress_type == zipfile.ZIP_STORED:
            return MappedRows(self.path, self._data_offset(member) + header_size, shape)
        return InMemoryRows(self._decompress(member, shape, header_size, pack_bits), pack_bits)

    def _data_offset(self, member: zipfile.ZipInfo) -> int:
        """Where a stored member's bytes begin: after its local header, whose name and extra
        field (zip64 sizes, for members over 4 GB) can differ from the central directory's."""
        with self.path.open("rb") as raw:
            raw.seek(member.header_offset)
            fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
        name_length, extra_length = fields[-2:]
        return member.header_offset + _LOCAL_HEADER.size + name_length + extra_length

    def _decompress(
        self, member: zipfile.ZipInfo, shape: tuple[int, ...], header_size: int, pack_bits: bool
    ) -> np.ndarray:
        row_bytes = math.prod(shape[1:])
        kept_shape = (*shape[:-1], -(-shape[-1] // 8)) if pack_bits else shape
        kept = np.empty(kept_shape, dtype=np.uint8)
        chunk = max(1, _STREAM_BYTES // row_bytes)
        with zipfile.ZipFile(self.path) as archive, archive.open(member) as npy:
            npy.read(header_size)
            for start in range(0, shape[0], chunk):
                count = min(chunk, shape[0] - start)
                data = npy.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise self.error(f"'{member.filename}' ends before its {shape[0]} rows")
                rows = np.frombuffer(data, dtype=np.uint8).reshape(count, *shape[1:])
                kept[start : start + count] = np.packbits(rows, axis=-1) if pack_bits else rows
        return kept


class H5File(PublishedFile):
    def __init__(self, path: Path, published: str) -> None:
        super().__init__(path, published)
        try:
            with h5py.File(path, "r") as file:
                self._datasets = {
                    name: (item.shape, item.dtype)
                    for name, item in file.items()
                    if isinstance(item, h5py.Dataset)
                }
        except OSError as err:
            raise self.error(f"not an HDF5 file ({err})") from err

    def _header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        if name not in self._datasets:
            raise self._missing(name, list(self._datasets))
        return self._datasets[name]

    def _load(self, name: str) -> np.ndarray:
        with h5py.File(self.path, "r") as file:
            return file[name][()]

    def _rows(self, name: str, shape: tuple[int, ...], pack_bits: bool) -> "Rows":
        return H5Rows(self.path, name, shape)


class Rows(ABC):
    """Row access to an (N, ...) uint8 array; `read` is given rows in increasing order, the
    order every format reads fastest."""

    shape: tuple[int, ...]

    def __len__(self) -> int:
        return self.shape[0]

    @abstractmethod
    def read(self, rows: np.ndarray) -> np.ndarray: ...


class InMemoryRows(Rows):
    def __init__(self, array: np.ndarray, packed_bits: bool) -> None:
        self.array = array
        self.packed_bits = packed_bits
        width = array.shape[-1] * 8 if packed_bits else array.shape[-1]
        self.shape = (*array.shape[:-1], width)

    def read(self, rows: np.ndarray) -> np.ndarray:
        if self.packed_bits:
            return np.unpackbits(self.array[rows], axis=-1, count=self.shape[-1])
        return self.array[rows]


class _OpenedPerProcess(Rows):
    """Opens its file on first use in each process, and never pickles an open handle."""

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = path
        self.shape = shape
        self._opened: Any = None
        self._pid = -1

    def _array(self) -> Any:
        if self._pid != os.getpid():
            self._opened, self._pid = self._open(), os.getpid()
        return self._opened

    @abstractmethod
    def _open(self) -> Any: ...

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None, "_pid": -1}


class MappedRows(_OpenedPerProcess):
    def __init__(self, path: Path, offset: int, shape: tuple[int, ...]) -> None:
        super().__init__(path, shape)
        self.offset = offset

    def _open(self) -> np.memmap:
        return np.memmap(self.path, np.uint8, mode="r", offset=self.offset, shape=self.shape)

    def read(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._array()[rows])


class H5Rows(_OpenedPerProcess):
    def __init__(self, path: Path, name: str, shape: tuple[int, ...]) -> None:
        super().__init__(path, shape)
        self.name = name

    def _open(self) -> h5py.File:
        return h5py.File(self.path, "r")

    def read(self, rows: np.ndarray) -> np.ndarray:
        # One read a row: h5py's list indexing measured several times slower, on a chunked
        # and compressed dataset, than reading the same rows one by one.
        dataset = self._array()[self.name]
        return np.stack([dataset[row] for row in rows.tolist()])
