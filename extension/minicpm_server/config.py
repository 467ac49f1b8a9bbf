"""``c.MiniCPM.*``: every setting of the server extension, as traitlets."""

from __future__ import annotations

import os
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from traitlets import Bool, Float, Int, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable


class MiniCPM(LoggingConfigurable):
    """Settings of the MiniCPM server extension (``c.MiniCPM.<name>`` in jupyter_server_config)."""

    model = Unicode(
        "", config=True,
        help="Catalogue name, GGUF file or Hugging Face folder; empty = best local MiniCPM, "
             "else the embedded stand-in (SmolLM2-135M).")
    backend = Unicode(
        "auto", config=True, help="auto, llama.cpp, torch or remote.")
    device = Unicode("", config=True, help="cpu or cuda (torch backend); empty = backend default.")
    quant = Unicode("", config=True, help="int8 or int4 (torch backend); empty = none.")
    n_threads = Int(0, config=True, help="CPU threads for llama.cpp; 0 = auto (the cores other "
                    "processes leave free, re-chosen while it runs); a number pins that count.")
    n_ctx = Int(0, config=True, help="Context window in tokens; 0 = the model's default.")
    prompt_cache_mb = Float(
        -1.0, config=True,
        help="llama.cpp prompt cache: MB of KV snapshots kept for recent conversations, on top "
             "of the model; -1 = the default (an eighth of RAM, 512–2048), 0 = off.")
    kv_type = Unicode("auto", config=True,
                      help="llama.cpp KV cache type: auto (for large caches q8_0 K + f16 V with "
                           "8 GB RAM or more, else q8_0), f16, q8_0, q4_0, or a K/V pair "
                           "such as q8_0/f16.")
    low_memory = Bool(False, config=True,
                      help="llama.cpp: q4_0 KV cache and smaller batches (4 GB laptops).")
    speculative = Unicode("auto", config=True,
                          help="llama.cpp prompt-lookup speculative decoding: auto, on, off.")
    model_dirs = List(Unicode(), config=True, help="Extra folders searched for models.")
    remote_base_url = Unicode(
        "", config=True,
        help="OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1); set → remote backend.")
    remote_api_key_env = Unicode(
        "", config=True, help="Name of the environment variable holding the remote API key.")
    remote_timeout = Float(120.0, config=True, help="Seconds to wait on the remote server.")
    concurrency = Int(
        1, config=True,
        help="Generations run at once. A local engine runs one at a time anyway; raise it for "
             "the remote backend, whose server batches.")
    max_queue = Int(64, config=True, help="Requests waiting beyond this are refused with 503.")
    preread = Bool(True, config=True,
                   help="Pre-read: while a notebook is open with the sidebar, read the context "
                        "the next question would carry into the prompt cache in idle time "
                        "(lowest priority; any request stops it within one chunk).")
    chats_dir = Unicode(
        config=True,
        help="Where saved chats live (one JSON file each). Servers sharing a folder take a "
             "file lock for every write and for start-up clean-up.")
    load_on_start = Bool(
        True, config=True, help="Load the model when the server starts (in the background); "
                                "False = at first use.")
    remote_max_response_bytes = Int(
        16 * 2**20, config=True,
        help="Most bytes read from the remote server for one answer or listing (it is not "
             "trusted to stop).")
    # Limits on what one request may ask for: checked before any work, answered with 4xx.
    max_image_bytes = Int(10 * 2**20, config=True, help="Largest image file accepted (bytes).")
    max_image_pixels = Int(
        40_000_000, config=True,
        help="Largest image (width×height) accepted; read from the file's header, before "
             "decoding.")
    max_images = Int(8, config=True, help="Most images in one request.")
    max_body_bytes = Int(
        32 * 2**20, config=True,
        help="Largest request body / WebSocket frame; refused before it is read.")
    max_context_parts = Int(256, config=True, help="Most context parts in one chat request.")
    max_messages = Int(512, config=True, help="Most messages in one request.")
    max_stop = Int(16, config=True, help="Most stop strings in one request (each at most 256 "
                                         "characters).")
    max_tokens_limit = Int(
        32768, config=True,
        help="Largest max_tokens a request may ask for (the context window caps it further).")
    engine_process = Bool(
        True, config=True,
        help="Run the model in its own worker process (a native crash or an out-of-memory "
             "kill then ends that process, not the server). False = in the server process.")
    bad_models_file = Unicode(
        config=True,
        help="Where models that crashed the engine while loading are remembered (JSON); they "
             "are not loaded at start-up until chosen again. Empty = do not remember.")
    max_requests_per_connection = Int(
        8, config=True,
        help="Requests one WebSocket may have queued or running at once; more are refused "
             "with 429.")

    @default("chats_dir")
    def _chats_dir_default(self) -> str:
        return os.path.join(jupyter_data_dir(), "minicpm", "chats")

    @default("bad_models_file")
    def _bad_models_default(self) -> str:
        return os.path.join(jupyter_data_dir(), "minicpm", "bad_models.json")

    @validate("concurrency")
    def _check_concurrency(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise ValueError("MiniCPM.concurrency must be >= 1")
        return int(proposal["value"])

    def load_options(self) -> dict[str, Any]:
        """Keyword options for ``minicpm.load`` (only what is set, so backends keep defaults)."""
        opts: dict[str, Any] = {}
        if self.device:
            opts["device"] = self.device
        if self.quant:
            opts["quant"] = self.quant
        if self.n_threads:
            opts["n_threads"] = self.n_threads
        if self.n_ctx:
            opts["n_ctx"] = self.n_ctx
        if self.prompt_cache_mb >= 0:
            opts["cache_mb"] = self.prompt_cache_mb
        if self.kv_type != "auto":
            opts["kv_type"] = self.kv_type
        if self.low_memory:
            opts["low_memory"] = True
        if self.speculative != "auto":
            opts["speculative"] = self.speculative
        if self.model_dirs:
            opts["model_dirs"] = list(self.model_dirs)
        if self.remote_base_url:
            opts["base_url"] = self.remote_base_url
            opts["timeout"] = self.remote_timeout
            opts["max_response_bytes"] = self.remote_max_response_bytes
            if self.remote_api_key_env:
                opts["api_key_env"] = self.remote_api_key_env
        return opts
