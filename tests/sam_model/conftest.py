"""Fixtures for the sam_model tests.

The reference packages (``segment_anything``, ``mobile_sam``) import torchvision
and timm, which this project does not install: ``reference_shims.install()``
gives them small pure-torch stand-ins (see tests/reference_shims.py). Plain
helpers live in ``sam_helpers`` (a conftest imported by name clashes with the
other test folders' conftests when pytest is given several folders).
"""

from __future__ import annotations

import pytest
import reference_shims
import torch
from sam_helpers import perturb_

reference_shims.install()


@pytest.fixture
def one_thread():
    """Many tiny ops: one thread is much faster than two on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_sam():
    """A perturbed random-weight model of ``tiny_test_config()`` (img_size 256)."""
    from sam_model import build_sam_from_config, tiny_test_config

    torch.manual_seed(0)
    return perturb_(build_sam_from_config(tiny_test_config()), seed=1)
