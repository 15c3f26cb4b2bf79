"""vis_core.utils.benchmark: memory readings and measuring a case in a fresh process."""

import sys

import numpy as np
import pytest

from vis_core.utils.benchmark import peak_rss_mb, reset_peak_rss, rss_mb, run_fresh


def test_peak_follows_an_allocation_and_can_be_reset():
    before = rss_mb()
    block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
    assert peak_rss_mb() >= before + 60
    del block
    if reset_peak_rss():
        assert peak_rss_mb() < before + 32


def test_run_fresh_returns_the_result_of_the_last_line():
    code = (
        "from vis_core.utils.benchmark import print_result; "
        "print('noise'); print_result({'a': 1}); print_result({'a': 2})"
    )
    assert run_fresh([sys.executable, "-c", code]) == {"a": 2}


def test_run_fresh_names_a_failure():
    with pytest.raises(RuntimeError, match="exit code 3"):
        run_fresh([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    with pytest.raises(RuntimeError, match="no result"):
        run_fresh([sys.executable, "-c", "print('nothing')"])
