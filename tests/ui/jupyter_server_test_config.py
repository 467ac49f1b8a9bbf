"""Jupyter server for the galata tests: JupyterLab + minicpm_server with the stand-in model.

Run from tests/ui with `jupyter lab --config jupyter_server_test_config.py` (playwright.config.js
does it, twice: the stand-in server, and with MINICPM_UI_REMOTE_URL a second one whose remote
backend is the hostile fake OpenAI server). A token is kept; the tests send it as a header."""

import os
import tempfile

from jupyterlab.galata import configure_jupyter_server

c = get_config()  # noqa: F821
configure_jupyter_server(c)

c.ServerApp.port = int(os.environ.get("MINICPM_UI_PORT", "8899"))
c.IdentityProvider.token = os.environ.get("MINICPM_UI_TOKEN", "minicpm-ui-token")
c.ServerApp.allow_root = True  # CI machines run as root
c.ServerApp.jpserver_extensions = {"minicpm_server": True}
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"

remote = os.environ.get("MINICPM_UI_REMOTE_URL")
if remote:
    # The hostile-output tests: answers come from servers/fake_openai.py on loopback.
    c.MiniCPM.remote_base_url = remote
    c.MiniCPM.model = ""
else:
    # The embedded stand-in (SmolLM2-135M-Instruct), loaded when the server starts.
    c.MiniCPM.model = os.environ.get("MINICPM_UI_MODEL", "SmolLM2-135M-Instruct")
c.MiniCPM.load_on_start = True
c.MiniCPM.n_threads = 2
c.MiniCPM.chats_dir = tempfile.mkdtemp(prefix="minicpm-ui-chats-")
