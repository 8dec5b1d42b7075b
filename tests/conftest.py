"""Shared fixtures. Tests run on the database DATABASE_URL names (PostgreSQL in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

SHARED_DATA = Path(settings.STEPMARK_DEMO_DATA_DIR)


def shared_data(relative: str) -> Path:
    """A path in ../shared/data; skip the test with a clear reason when the data is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data {path} is not present on this machine")
    return path


@pytest.fixture(autouse=True)
def _media_root(tmp_path, settings):
    # Every test stores images in its own folder, so file assertions see only their own files.
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def project(db):
    from annotation.models import Project

    return Project.objects.create(name="test project")


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def _make(username: str, *, staff: bool = False, superuser: bool = False):
        return get_user_model().objects.create_user(
            username=username, password="pw-" + username, is_staff=staff or superuser, is_superuser=superuser
        )

    return _make
