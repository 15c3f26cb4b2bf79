"""A read-only sequence whose items are made when accessed (frames decoded on demand)."""

from collections.abc import Sequence

__all__ = ["LazySequence"]


class LazySequence(Sequence):
    """Subclasses give ``__len__`` and ``_item(t)`` for 0 <= t < len; indexing takes negative
    indices and slices (a slice is a list of the items it names, made in order)."""

    def _item(self, t: int):
        raise NotImplementedError

    def __getitem__(self, index):
        n = len(self)
        if isinstance(index, slice):
            return [self._item(t) for t in range(*index.indices(n))]
        t = int(index) + (n if index < 0 else 0)
        if not 0 <= t < n:
            raise IndexError(f"item {index} of a sequence of {n}")
        return self._item(t)
