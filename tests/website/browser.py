"""Headless Chromium driven over the Chrome DevTools Protocol, and axe-core to run inside its pages.

`ensure_chromium()` finds Chromium, installing the Debian package `chromium` when it is missing and this process is
root; `ensure_axe()` fetches the pinned axe-core from the npm registry into a cache directory once, checked against
its integrity hash.
`Browser` starts Chromium on a free loopback port in a temporary profile and talks to one page of it through a
WebSocket (websocket-client): navigate, evaluate JavaScript, set the viewport, take a screenshot.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import websocket

from tests.packages import ensure

INSTALL_SECONDS = 900
# Long enough for a slow, shared machine: these are deadlines for a hang, not measures of speed.
START_SECONDS = 60
LOAD_SECONDS = 60
CALL_SECONDS = 120
AXE_VERSION = "4.14.1"
# The registry's dist.integrity of that version: what is fetched must match it.
AXE_INTEGRITY = "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def ensure_chromium() -> Path | str:
    """Chromium's path, installing the Debian package `chromium` first when it is missing and we are root;
    otherwise the reason the browser tests cannot run."""
    return ensure(BINARIES, "chromium")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mailings-tests"


def ensure_axe() -> Path | str:
    """axe.min.js of AXE_VERSION, from the cache or fetched once from the npm registry (no npm needed), checked
    against the pinned integrity hash; otherwise the reason the accessibility check cannot run."""
    target = cache_dir() / f"axe-core-{AXE_VERSION}" / "axe.min.js"
    if target.is_file():
        return target
    registry = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org").rstrip("/")
    url = f"{registry}/axe-core/-/axe-core-{AXE_VERSION}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=INSTALL_SECONDS) as response:
            tarball = response.read()
    except OSError as exc:
        return f"fetching axe-core {AXE_VERSION} from {url} failed: {exc}"
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != AXE_INTEGRITY:
        return f"axe-core {AXE_VERSION} from {url} does not match its pinned integrity hash; not used"
    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        member = archive.extractfile("package/axe.min.js")
        if member is None:
            return f"axe-core {AXE_VERSION} from {url} holds no package/axe.min.js"
        script = member.read()
    work = target.parent.with_name(target.parent.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "axe.min.js").write_bytes(script)
    shutil.rmtree(target.parent, ignore_errors=True)
    work.rename(target.parent)  # complete or absent: a run killed half-way leaves only the .partial directory
    return target


class BrowserError(Exception):
    pass


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: Path, profile: Path) -> None:
        self.profile = profile
        self.process = subprocess.Popen(
            [
                str(binary), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
                f"--user-data-dir={profile}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            port = self._port()
            page = self._page(port)
            self.socket = websocket.create_connection(page, timeout=CALL_SECONDS, suppress_origin=True)
        except BaseException:
            self.close()
            raise
        self._next = 0

    def _port(self) -> int:
        """The port Chromium chose, from the file it writes into the profile once it listens."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrowserError(f"Chromium exited with status {self.process.returncode}")
            lines = marker.read_text().splitlines() if marker.is_file() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            time.sleep(0.05)
        raise BrowserError(f"Chromium did not open its DevTools port within {START_SECONDS} s")

    def _page(self, port: int) -> str:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=START_SECONDS) as answer:
                targets = json.load(answer)
            pages = [t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0])
            time.sleep(0.05)
        raise BrowserError("Chromium has no page to drive")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are dropped."""
        self._next += 1
        ident = self._next
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        """Navigate to *url* and wait until the document and its stylesheet are loaded."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            ready = self.evaluate("document.location.href + ' ' + document.readyState")
            if ready == f"{url} complete":
                return
            time.sleep(0.05)
        raise BrowserError(f"{url} did not load within {LOAD_SECONDS} s")

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=2 if mobile else 1, mobile=mobile,
        )  # fmt: skip

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def axe(self, source: str) -> list[dict[str, Any]]:
        """axe-core's violations in the open page: id, impact, help and the offending elements."""
        if not self.evaluate("typeof window.axe === 'object'"):
            self.evaluate(source + "\n;true")
        script = (
            "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({id: v.id, "
            "impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))})))"
        )
        return list(self.evaluate(script))

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=START_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
