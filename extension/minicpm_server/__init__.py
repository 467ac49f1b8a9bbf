"""jupyter_server extension: one shared MiniCPM engine behind REST, WebSocket and OpenAI routes.

Enabled by ``pip install`` (jupyter-config/server-config/minicpm_server.json); configured with
``c.MiniCPM.*`` (see ``minicpm_server.config``); API in docs/protocol.md and docs/openapi.yaml.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "minicpm_server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .app import setup

    setup(serverapp)


def _unload_jupyter_server_extension(serverapp: Any) -> None:
    from .app import teardown

    teardown(serverapp)


# Older jupyter_server / notebook spelling.
load_jupyter_server_extension = _load_jupyter_server_extension
