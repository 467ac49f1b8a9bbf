"""Jupyter Notebook 7 for tests/ui/tests/notebook7.spec.js (`jlpm playwright test -c
notebook7.config.js`): the JupyterLab tests' server (stand-in model, token), on its own port, with
a fake Ollama store holding one tiny MiniCPM GGUF, so the picker shows another tool's model."""

import hashlib
import json
import os
import tempfile
from pathlib import Path

c = get_config()  # noqa: F821
load_subconfig(str(Path(__file__).with_name("jupyter_server_test_config.py")))  # noqa: F821
c.ServerApp.port = int(os.environ.get("MINICPM_UI_NB_PORT", "8896"))


def _fake_ollama() -> Path:
    from minicpm.testing import preset, random_weights
    from minicpm.testing.gguf_writer import write_gguf

    root = Path(tempfile.mkdtemp(prefix="minicpm-ui-ollama-"))
    cfg = preset("dense_tied")
    tiny = write_gguf(cfg, random_weights(cfg, 0), root / "tiny.gguf", name="MiniCPM tiny")
    data = tiny.read_bytes()
    tiny.unlink()
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir()
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "minicpm-tiny" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}]}))
    return root


os.environ["OLLAMA_MODELS"] = str(_fake_ollama())
