"""Shared fixtures: the full-resolution CT from ../shared/data when present."""

import os

import pytest

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def shared_ct():
    """The 512 x 512 x 133 chest CT (HU) with its label map, or skip when ../shared is absent."""
    import fluorojax as fj

    ct = os.path.join(SHARED_DATA, "cxr.nii.gz")
    if not os.path.exists(ct):
        pytest.skip(f"the shared CT is not available at {os.path.abspath(ct)} (tests that need ../shared/data)")
    return fj.load_volume(ct, labels=os.path.join(SHARED_DATA, "mask.nii.gz"))
