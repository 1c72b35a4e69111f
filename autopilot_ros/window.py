"""The 20-step feature window: O(1) push, a contiguous [1, L, F] float32 view, no copies.

Each row is written twice, at i and i + L of a (1, 2L, F) buffer, so the last L rows are
always one contiguous slice. The L possible slices are made once, so a tick allocates
nothing but hands ONNX Runtime a C-contiguous array it can read in place.
"""

import numpy as np


class FeatureWindow:
    def __init__(self, length: int, num_features: int) -> None:
        self.length = length
        self.num_features = num_features
        self._buf = np.zeros((1, 2 * length, num_features), dtype=np.float32)
        self._views = [self._buf[:, i:i + length, :] for i in range(length)]
        self._next = 0  # where the next row goes (0 .. length-1)
        self.fill = 0
        self.pushes = 0  # rows pushed since creation: tells a reader a row arrived

    def push(self, row: np.ndarray) -> None:
        i = self._next
        self._buf[0, i] = row
        self._buf[0, i + self.length] = row
        self._next = (i + 1) % self.length
        if self.fill < self.length:
            self.fill += 1
        self.pushes += 1

    @property
    def full(self) -> bool:
        return self.fill == self.length

    def array(self) -> np.ndarray:
        """Oldest row first; a view into the buffer, valid until the next push."""
        return self._views[self._next]

    def clear(self) -> None:
        self._buf[:] = 0.0
        self._next = 0
        self.fill = 0
