"""Random access that never stops a run on a bad item: the corrupt-data rule of every stored source.

A source (image folder, ArrayRecord shards, TFDS split) subclasses ``SkipsUnreadable`` and supplies
``_decode(index)`` (may raise on corrupt data), ``_make_item(index, decoded)`` and
``_describe(index)`` (what the log names: a file, or a record of a shard). Then:

- ``read(index)`` returns item ``index``, or None after logging the error (absl warning naming the
  item and the running count) and remembering the index;
- ``source[i]`` returns item ``i`` or, when it is unreadable, the next readable one (wrapping around),
  so a Grain pipeline always gets an item; only a source with no readable item raises;
- ``num_skipped`` counts the distinct bad items of one source, ``total_skipped()`` those of every
  source in this process (each Grain worker process keeps its own count).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from absl import logging

_skipped_lock = threading.Lock()
_skipped_in_process: set[str] = set()


def total_skipped() -> int:
    """Number of distinct unreadable items (files or records) skipped by any source in this process."""
    with _skipped_lock:
        return len(_skipped_in_process)


class SkipsUnreadable:
    """Mixin: ``read``/``__getitem__`` skip and count items whose ``_decode`` raises (module docstring).

    Subclasses call ``_init_skipping(root)`` in ``__init__`` and define ``__len__``.
    """

    root: str  # named in log lines and errors
    unreadable_kind = "item"  # "image", "record": the noun of log lines

    def _init_skipping(self, root: str) -> None:
        self.root = root
        self._bad_indices: set[int] = set()
        self._bad_indices_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Pickling support (Grain worker processes): a lock does not pickle, so it is dropped and recreated."""
        state = self.__dict__.copy()
        del state["_bad_indices_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bad_indices_lock = threading.Lock()

    def _decode(self, index: int) -> Any:
        raise NotImplementedError

    def _make_item(self, index: int, decoded: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _describe(self, index: int) -> str:
        raise NotImplementedError

    @property
    def num_skipped(self) -> int:
        """Number of distinct unreadable items this source has skipped so far."""
        with self._bad_indices_lock:
            return len(self._bad_indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        size = len(self)
        index = int(index) % size
        for attempt in range(size):
            candidate = (index + attempt) % size
            if candidate in self._bad_indices:
                continue
            item = self.read(candidate)
            if item is not None:
                return item
        raise ValueError(f"Every {self.unreadable_kind} in {self.root!r} is unreadable ({size} of them).")

    def read(self, index: int) -> dict[str, np.ndarray] | None:
        """Item ``index`` itself, or None (logged and counted) when it cannot be decoded."""
        try:
            decoded = self._decode(index)
        except Exception as error:  # decoders raise many types (OSError, SyntaxError, zlib.error, msgpack, ...)
            self._record_bad(index, error)
            return None
        return self._make_item(index, decoded)

    def _record_bad(self, index: int, error: Exception) -> None:
        described = self._describe(index)
        with self._bad_indices_lock:
            newly_bad = index not in self._bad_indices
            self._bad_indices.add(index)
            count = len(self._bad_indices)
        if not newly_bad:
            return
        with _skipped_lock:
            _skipped_in_process.add(described)
        logging.warning("Skipping unreadable %s %s (%s: %s); %d skipped so far in %s.",
                        self.unreadable_kind, described, type(error).__name__, error, count, self.root)
