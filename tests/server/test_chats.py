"""Saved chats: CRUD over REST, and atomic writes that survive a crash before the rename."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from minicpm_server.chats import ChatStore
from tornado.httpclient import HTTPClientError


async def test_crud(jp_fetch: Any) -> None:
    body = json.dumps({"title": "t1", "messages": [{"role": "user", "content": "hi"}]})
    r = await jp_fetch("minicpm", "chats", "c1", method="PUT", body=body)
    assert json.loads(r.body)["title"] == "t1"
    rows = json.loads((await jp_fetch("minicpm", "chats")).body)["chats"]
    assert [(c["id"], c["n_messages"]) for c in rows] == [("c1", 1)]
    got = json.loads((await jp_fetch("minicpm", "chats", "c1")).body)
    assert got["messages"][0]["content"] == "hi"
    r = await jp_fetch("minicpm", "chats", "c1", method="DELETE")
    assert r.code == 204
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("minicpm", "chats", "c1")
    assert e.value.code == 404
    assert json.loads(e.value.response.body)["status"] == 404


async def test_bad_chat_requests(jp_fetch: Any) -> None:
    for args, body in [(("bad.id",), "{}"), (("c2",), "{not json"),
                       (("c2",), json.dumps({"messages": "x"}))]:
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("minicpm", "chats", *args, method="PUT", body=body)
        assert e.value.code == 400
        assert "error" in json.loads(e.value.response.body)


def test_crash_between_write_and_rename_loses_nothing(tmp_path: Path) -> None:
    """A process that dies after writing the temp file but before the rename: the saved chat is
    the old one, whole; the leftover temp file is ignored and cleaned up."""
    folder = tmp_path / "chats"
    store = ChatStore(folder)
    store.save("c1", "v1", [{"role": "user", "content": "first"}])
    script = textwrap.dedent(f"""
        import os
        from minicpm_server.chats import ChatStore
        def crash(src, dst):
            os._exit(17)  # power cut: no cleanup, no exception handlers
        os.replace = crash
        ChatStore({str(folder)!r}).save("c1", "v2", [{{"role": "user", "content": "second"}}])
    """)
    rc = subprocess.run([sys.executable, "-c", script]).returncode
    assert rc == 17
    leftovers = [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the crash should have left a temp file behind"
    assert json.loads(leftovers[0].read_text())["title"] == "v2"  # fully written, not renamed
    assert store.get("c1")["title"] == "v1"
    assert [c["id"] for c in store.list()] == ["c1"]
    assert store.cleanup() == len(leftovers)
    store.save("c1", "v3", [])
    assert store.get("c1")["title"] == "v3"


async def test_foreign_chat_files_are_skipped(jp_fetch: Any, jp_serverapp: Any) -> None:
    """Files the server did not write (a JSON array, numeric messages, a string date) are
    left out of the list; the others are still listed, and opening one is a clear error."""
    folder = Path(jp_serverapp.web_app.settings["minicpm"].chats.folder)
    await jp_fetch("minicpm", "chats", "good", method="PUT",
                   body=json.dumps({"title": "ok", "messages": []}))
    (folder / "arr.json").write_text("[1, 2, 3]")
    (folder / "num.json").write_text(json.dumps({"title": "x", "messages": 7}))
    (folder / "date.json").write_text(json.dumps({"title": "x", "messages": [],
                                                  "updated": "yesterday"}))
    r = await jp_fetch("minicpm", "chats")
    assert [c["id"] for c in json.loads(r.body)["chats"]] == ["good"]
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("minicpm", "chats", "arr")
    assert e.value.code == 500 and "damaged" in e.value.response.body.decode()


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: Any) -> None:
    store = ChatStore(tmp_path)
    store.save("c1", "v1", [])

    def boom(*a: Any, **k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("minicpm_server.chats.os.replace", boom)
    with pytest.raises(OSError):
        store.save("c1", "v2", [])
    assert store.get("c1")["title"] == "v1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_two_servers_sharing_a_folder_never_race(tmp_path: Path) -> None:
    """Server A is mid-write (temp file written, rename not yet done) when server B starts
    and cleans up: B leaves A's temp file alone, and A's save lands whole."""
    folder = tmp_path / "chats"
    ChatStore(folder).save("c0", "first", [])
    script = textwrap.dedent(f"""
        import os, sys
        from minicpm_server.chats import ChatStore
        real = os.replace
        def held(src, dst):
            print("writing", flush=True)
            sys.stdin.readline()  # held mid-write until the test says B is done
            real(src, dst)
        os.replace = held
        ChatStore({str(folder)!r}).save("c1", "from A", [{{"role": "user", "content": "hi"}}])
        print("saved", flush=True)
    """)
    a = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert a.stdout is not None and a.stdin is not None
    assert a.stdout.readline().strip() == "writing"
    tmp = [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    assert tmp, "A should be mid-write"
    assert ChatStore(folder).cleanup() == 0  # B: A holds the folder lock, nothing removed
    assert tmp[0].exists()
    a.stdin.write("go\n")  # B is done: let A finish its write
    a.stdin.flush()
    assert a.stdout.readline().strip() == "saved"
    assert a.wait(10) == 0
    assert ChatStore(folder).get("c1")["title"] == "from A"
    assert sorted(c["id"] for c in ChatStore(folder).list()) == ["c0", "c1"]
