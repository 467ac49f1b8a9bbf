"""An ipywidgets chat for frontends without the JupyterLab sidebar (Notebook 7, VS Code).

Shares the kernel's %minicpm transport and conversation memory. Answers stream in a worker
thread so the kernel stays responsive; Stop cancels within one token."""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as widgets

from .render import answer_footer
from .safe_markdown import to_html
from .transport import TransportError


def _to_html(text: str) -> str:
    """Markdown → HTML that cannot run code or fetch (the HTML widget sets innerHTML as is)."""
    try:
        return to_html(text)
    except Exception:  # a renderer bug must not break the chat: escaped text then
        return f"<div style='white-space: pre-wrap'>{html.escape(text)}</div>"


def _bubble(role: str, text: str) -> str:
    who = "You" if role == "user" else "MiniCPM"
    return f"<div class='minicpm-{role}'><b>{who}:</b> {_to_html(text)}</div>"


class ChatWidget(widgets.VBox):
    """``%minicpm chat`` / ``minicpm_magics.ChatWidget()``."""

    def __init__(self, magics: Any = None, interval: float = 0.1, **kwargs: Any):
        self.magics = magics or _magics()
        self.interval = interval
        self.status = widgets.HTML(self._status_text())
        self.history_box = widgets.VBox([])
        self.input = widgets.Textarea(placeholder="Ask MiniCPM… (Shift+Enter in the cell "
                                                  "runs code; use the Send button here)",
                                      layout=widgets.Layout(width="100%"))
        self.send_button = widgets.Button(description="Send", button_style="primary")
        self.stop_button = widgets.Button(description="Stop", disabled=True)
        self.reset_button = widgets.Button(description="New chat")
        self.send_button.on_click(lambda _: self.send(self.input.value))
        self.stop_button.on_click(lambda _: self.stop())
        self.reset_button.on_click(lambda _: self.reset())
        buttons = widgets.HBox([self.send_button, self.stop_button, self.reset_button])
        super().__init__([self.status, self.history_box, self.input, buttons], **kwargs)
        self._reply: Any = None
        self._thread: threading.Thread | None = None
        self.last_text = ""

    def _status_text(self) -> str:
        try:
            s = self.magics.transport.status()
            return (f"<small>{html.escape(str(s.get('model') or 'no model'))} · "
                    f"{html.escape(s['transport'])}</small>")
        except Exception as e:  # status is decoration: never fail to build the widget
            return f"<small>{html.escape(str(e))}</small>"

    def send(self, text: str) -> None:
        """Ask ``text`` (what the Send button does); returns at once, the answer streams."""
        text = text.strip()
        if not text or (self._thread is not None and self._thread.is_alive()):
            return
        self.input.value = ""
        answer = widgets.HTML(_bubble("assistant", "…"))
        self.history_box.children = (*self.history_box.children, widgets.HTML(_bubble("user", text)), answer)
        self.send_button.disabled, self.stop_button.disabled = True, False
        self._thread = threading.Thread(target=self._run, args=(text, answer), daemon=True,
                                        name="minicpm-chat-widget")
        self._thread.start()

    def _run(self, text: str, answer: widgets.HTML) -> None:
        from .options import Request

        buf = ""
        try:
            prompt = self.magics.build_prompt(Request(), text, [])
            self._reply = reply = self.magics.transport.start(prompt)
            last = 0.0
            for delta in reply:
                buf += delta
                if time.monotonic() - last >= self.interval:
                    last = time.monotonic()
                    answer.value = _bubble("assistant", buf)
            footer = answer_footer(reply)
            answer.value = _bubble("assistant", buf) + f"<small>{html.escape(footer)}</small>"
            self.magics.memory.add(text, buf)
        except (TransportError, ValueError) as e:
            answer.value = _bubble("assistant", buf) + f"<i>error: {html.escape(str(e))}</i>"
        except Exception as e:  # the widget must survive anything; show it instead
            answer.value = f"<i>error: {html.escape(type(e).__name__ + ': ' + str(e))}</i>"
        finally:
            if self._reply is not None:
                self._reply.close()
            self._reply = None
            self.last_text = buf
            self.send_button.disabled, self.stop_button.disabled = False, True
            self.status.value = self._status_text()

    def stop(self) -> None:
        if self._reply is not None:
            self._reply.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current answer is complete (tests, scripts). True if done."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def reset(self) -> None:
        self.magics.memory.reset()
        self.history_box.children = ()


def _magics() -> Any:
    """The kernel's MiniCPMMagics, loading the extension if needed."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("ChatWidget needs an IPython kernel")
    inst = shell.magics_manager.registry.get("MiniCPMMagics")
    if inst is None:
        from . import load_ipython_extension

        load_ipython_extension(shell)
        inst = shell.magics_manager.registry["MiniCPMMagics"]
    return inst
