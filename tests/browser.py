"""Headless Chromium with the network off, for the report tests and ``docs/screenshots.py``.

"Network off": every host name resolves to nothing (``--host-resolver-rules``) and any request
that would still go out is sent to a proxy on a dead loopback port. Pages are opened as ``file://``
URLs, which neither rule touches, exactly as a reader opens a downloaded report.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_PROBE_ATTR = re.compile(r'data-probe="([^"]*)"')


def find_chromium() -> str | None:
    """``$ABALONE_CHROMIUM`` if set, else the first Chromium/Chrome binary on ``PATH``."""
    explicit = os.environ.get("ABALONE_CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(binary: str, args: list[str], url: str, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="abalone-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{_dead_port()}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            *args,
            url,
        ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def dump_dom(binary: str, page: Path, *, budget_ms: int = 5000, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``), network off."""
    args = [f"--virtual-time-budget={budget_ms}", "--dump-dom"]
    return _run(binary, args, page.resolve().as_uri(), timeout).stdout


def screenshot(
    binary: str, page: Path, png: Path, *, size: tuple[int, int] = (1280, 800), timeout: float = 60
) -> Path:
    """A PNG of the page as rendered with the network off."""
    png.parent.mkdir(parents=True, exist_ok=True)
    args = [
        f"--window-size={size[0]},{size[1]}",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
        f"--screenshot={png.resolve()}",
    ]
    _run(binary, args, page.resolve().as_uri(), timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png


# Appended to a copy of a page: after load and web fonts, what the page's own scripts and
# stylesheets did, as JSON in <body data-probe="…"> (which --dump-dom then prints).
PROBE = """<script>
window.addEventListener('load', function () {
  document.fonts.ready.then(function () {
    var body = getComputedStyle(document.body);
    var navbar = document.querySelector('.navbar');
    var icon = document.querySelector('.fas, .fa');
    var rows = document.querySelectorAll('.bootstrap-table table tbody tr');
    document.body.setAttribute('data-probe', JSON.stringify({
      jquery: typeof window.jQuery,
      bootstrapTable: !!(window.jQuery && window.jQuery.fn.bootstrapTable),
      tables: document.querySelectorAll('.bootstrap-table').length,
      rows: Array.prototype.map.call(rows, function (r) { return r.innerText; }),
      bodyMargin: body.marginTop,
      bodyFont: body.fontFamily,
      navbarDisplay: navbar ? getComputedStyle(navbar).display : null,
      iconFont: icon ? getComputedStyle(icon, '::before').fontFamily : null,
      iconFontLoaded: document.fonts.check('900 16px "Font Awesome 6 Free"')
    }));
  });
});
</script>"""


def probe(binary: str, page: Path) -> dict:
    """Load a copy of ``page`` (same directory, so its relative links hold) with :data:`PROBE`
    appended; returns what the probe saw."""
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    try:
        dom = dump_dom(binary, copy)
    finally:
        copy.unlink()
    found = _PROBE_ATTR.search(dom)
    if not found:
        raise AssertionError(f"the probe did not run in {page.name}; DOM starts {dom[:500]!r}")
    return json.loads(html.unescape(found.group(1)))
