"""Fixtures of the evaluation tests."""

import pytest

from vis_core.evaluation import compiled


@pytest.fixture(params=["compiled", "pycocotools"])
def rle_backend(request, monkeypatch):
    """Runs a test with vis_core._rle and again with the pycocotools path that replaces it."""
    if request.param == "compiled":
        if compiled.rle_ops is None:
            pytest.skip("vis_core._rle is not built (pip install -e . builds it)")
    else:
        monkeypatch.setattr(compiled, "rle_ops", None)
    return request.param
