"""Fixtures of the routing tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstage.route.settings import NodeSettings, build_settings
from tests.route.route_harness import fast_route_config


@pytest.fixture()
def node(tmp_path: Path) -> NodeSettings:
    """Settings of a node in a fresh work folder (fast timings), for worker tests without servers."""
    settings = build_settings("NODE", 11112, "PACS@127.0.0.1:4242", tmp_path / "work", http_port=18042,
                              defaults_file=fast_route_config(tmp_path / "route.json"))
    settings.work.mkdir(parents=True)
    return settings
