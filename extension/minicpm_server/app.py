"""Wiring: config → EngineHost + ChatStore → routes on the Jupyter server."""

from __future__ import annotations

import logging
from typing import Any

from jupyter_server.utils import url_path_join
from tornado.ioloop import IOLoop

from .chats import ChatStore
from .completion_api import ROUTES as COMPLETION_ROUTES
from .completion_api import shutdown as completion_shutdown
from .config import MiniCPM
from .engine_host import EngineHost
from .handlers import (
    ChatWebSocket,
    LoadHandler,
    ModelsHandler,
    SavedChatHandler,
    SavedChatsHandler,
    ServerState,
    StatusHandler,
    UnloadHandler,
)
from .openai_api import ModelHandler, ModelsListHandler, NotFoundHandler
from .openai_chat import ChatCompletionsHandler
from .preread_api import ROUTES as PREREAD_ROUTES

ROUTES: list[tuple[str, Any]] = [
    ("minicpm/status", StatusHandler),
    ("minicpm/models", ModelsHandler),
    ("minicpm/models/load", LoadHandler),
    ("minicpm/models/unload", UnloadHandler),
    ("minicpm/chats", SavedChatsHandler),
    (r"minicpm/chats/([^/]+)", SavedChatHandler),
    ("minicpm/chat", ChatWebSocket),
    ("minicpm/v1/models", ModelsListHandler),
    (r"minicpm/v1/models/(.+)", ModelHandler),
    ("minicpm/v1/chat/completions", ChatCompletionsHandler),
    *PREREAD_ROUTES,  # the pre-read (preread_api.py, issue 25)
    *COMPLETION_ROUTES,  # inline completion socket + /v1/completions (completion_api.py)
    (r"minicpm/v1/(.*)", NotFoundHandler),  # last: every other /v1 path, as JSON
]


def setup(serverapp: Any) -> ServerState:
    config = MiniCPM(parent=serverapp)
    # The engine worker's stderr (llama.cpp's log, its asserts) and crash reports go to the
    # Jupyter server's own log, at its level.
    worker_log = logging.getLogger("minicpm.worker")
    worker_log.handlers = list(serverapp.log.handlers)
    worker_log.setLevel(serverapp.log.level)
    worker_log.propagate = not worker_log.handlers
    host = EngineHost(config)
    chats = ChatStore(config.chats_dir)
    chats.cleanup()  # temp files from a crash mid-write; saved chats are untouched
    state = ServerState(config, host, chats)
    web_app = serverapp.web_app
    web_app.settings["minicpm"] = state
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, path), h) for path, h in ROUTES])

    def start() -> None:
        host.bind_loop(IOLoop.current().asyncio_loop)  # type: ignore[attr-defined]
        if config.load_on_start:
            try:
                host.start_load()  # returns at once; the model loads in a thread
            except Exception as e:  # e.g. a configured model that does not exist
                host.state, host.error = "error", str(e)
                serverapp.log.error("MiniCPM: %s", e)

    # After start-up, on the loop: the server is not held up by the model.
    IOLoop.current().add_callback(start)
    serverapp.log.info("MiniCPM server extension loaded (chats in %s)", config.chats_dir)
    return state


def teardown(serverapp: Any) -> None:
    state = serverapp.web_app.settings.get("minicpm")
    if state is not None:
        completion_shutdown(serverapp.web_app.settings)
        state.host.shutdown()
