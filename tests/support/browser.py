"""A page opened in headless Chromium as a person would see it: what failed to load, what
errors it logged, whether each image decoded, and a screenshot of the whole page.

Chromium is driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``):
it reads commands from its file descriptor 3 and writes replies and events to 4, each message
JSON ended by a NUL byte, so no websocket library and no port are needed. Skips, naming the
package, where there is no Chromium.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 90.0
IMAGES = """JSON.stringify(Array.from(document.images).map(image => ({
    src: image.getAttribute("src").slice(0, 30), complete: image.complete,
    width: image.naturalWidth, height: image.naturalHeight})))"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium for the page test: apt-get install -y chromium")


@dataclass
class Seen:
    """What a page did while it loaded, and how it looked."""

    failed: list[str] = field(default_factory=list)
    """Resources that did not load (Network.loadingFailed): url and error."""
    errors: list[str] = field(default_factory=list)
    """Script exceptions, console errors and error log entries."""
    images: list[dict[str, Any]] = field(default_factory=list)
    """Each <img>: the start of its src, complete, naturalWidth and naturalHeight."""
    headings: list[str] = field(default_factory=list)
    """The text of each h2."""
    screenshot: Path | None = None


class _DevTools:
    """One Chromium and the pipe to it; `call` sends a command and waits for its reply,
    keeping every event that arrives meanwhile in `events`."""

    def __init__(self, profile: Path, width: int, height: int) -> None:
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def child_fds() -> None:  # the child's 3 and 4, wherever the pipes were opened
            into_3 = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            into_4 = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
            os.dup2(into_3, 3)
            os.dup2(into_4, 4)

        self.process = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-pipe", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(replies_write)
        self.events: list[dict[str, Any]] = []
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._replies, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._inbox.put(json.loads(message))
        self._inbox.put(None)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._receive())
        return next(event for event in self.events if event.get("method") == method)

    def _receive(self) -> dict[str, Any]:
        message = self._inbox.get(timeout=TIMEOUT)
        assert message is not None, "Chromium closed the DevTools pipe"
        return message

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (AssertionError, OSError, queue.Empty):
            pass
        finally:
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            os.close(self._commands)


def open_page(path: Path, profile: Path, screenshot: Path, *, width: int = 1400,
              height: int = 1000) -> Seen:
    """Open the file `path`, wait for it to load, and report what it did (`Seen`), with a
    screenshot of the whole page (beyond the window) saved as PNG at `screenshot`."""
    tools = _DevTools(profile, width, height)
    try:
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.call(f"{domain}.enable", session)
        tools.call("Page.navigate", session, url=path.resolve().as_uri())
        tools.wait_for("Page.loadEventFired")
        time.sleep(0.5)  # late console messages and decodes
        seen = Seen()
        seen.images = json.loads(tools.call("Runtime.evaluate", session, expression=IMAGES,
                                            returnByValue=True)["result"]["value"])
        seen.headings = tools.call("Runtime.evaluate", session, returnByValue=True,
                                   expression="Array.from(document.querySelectorAll('h2'))"
                                              ".map(h => h.textContent)")["result"]["value"]
        size = tools.call("Page.getLayoutMetrics", session)["cssContentSize"]
        shot = tools.call("Page.captureScreenshot", session, format="png",
                          captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"],
                                "height": size["height"], "scale": 1})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        seen.screenshot = screenshot
        _collect(tools.events, seen)
        return seen
    finally:
        tools.close()


def _collect(events: list[dict[str, Any]], seen: Seen) -> None:
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.loadingFailed":
            seen.failed.append(f"{params.get('requestId')}: {params.get('errorText')}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            seen.errors.append(str(details.get("exception", {}).get("description")
                                   or details.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            seen.errors.append(json.dumps(params.get("args")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            seen.errors.append(f"{entry.get('url', '')}: {entry.get('text')}")
