"""The feature window: order after any number of pushes, and a clear that really forgets."""

import numpy as np

from autopilot_ros.window import FeatureWindow


def rows(window: FeatureWindow) -> list[float]:
    """The first column of each row, oldest first."""
    return window.array()[0, :, 0].tolist()


def test_the_window_holds_the_last_rows_oldest_first_after_many_wraps():
    window = FeatureWindow(4, 3)
    assert window.array().shape == (1, 4, 3) and window.num_features == 3
    for k in range(1, 11):
        window.push(np.full(3, float(k), dtype=np.float32))
        assert window.pushes == k
        assert rows(window)[-min(k, 4):] == [float(v) for v in range(max(1, k - 3), k + 1)]
    assert window.full and rows(window) == [7.0, 8.0, 9.0, 10.0]
    assert window.array().flags['C_CONTIGUOUS'] and window.array().dtype == np.float32


def test_an_empty_window_is_zeros_and_not_full():
    window = FeatureWindow(3, 2)
    assert window.pushes == 0 and window.fill == 0 and not window.full
    assert not window.array().any()


def test_a_cleared_window_forgets_every_row_and_refills_in_order():
    window = FeatureWindow(3, 2)
    for k in range(5):
        window.push(np.full(2, k + 1.0, dtype=np.float32))
    window.clear()
    assert window.fill == 0 and not window.full and not window.array().any()
    window.push(np.full(2, 9.0, dtype=np.float32))
    assert rows(window) == [0.0, 0.0, 9.0] and window.fill == 1
    window.push(np.full(2, 8.0, dtype=np.float32))
    window.push(np.full(2, 7.0, dtype=np.float32))
    assert window.full and rows(window) == [9.0, 8.0, 7.0]
    assert window.pushes == 8  # the count of arrivals is never reset
