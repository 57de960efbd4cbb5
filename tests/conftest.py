"""Shared fixtures: real backends started by the tests, and a scripted chat model."""

from __future__ import annotations

pytest_plugins = ["tests.plugins.services"]
