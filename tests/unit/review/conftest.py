"""Shared by the review and export tests: label-studio-sdk's brush converter."""

import os

import pytest


@pytest.fixture(scope="session")
def brush():
    """The SDK's converter (installed without its many dependencies in CI, see .ci/run)."""
    if os.environ.get("CI"):
        import label_studio_sdk.converter.brush as converter
    else:
        converter = pytest.importorskip("label_studio_sdk.converter.brush",
                                        reason="pip install --no-deps label-studio-sdk")
    return converter
