"""What an HTML page loads: scripts, stylesheets, icons, images, fonts and CSS ``url()``s.

A test oracle written independently of ``validation.offline`` (which rewrites the URLs): it parses
the page with the standard library's HTML parser instead of matching known CDN URLs.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

_CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)")
_CSS_IMPORT = re.compile(r"@import\s+['\"]([^'\"]+)['\"]")
_LOADED_LINKS = {
    "stylesheet",
    "icon",
    "shortcut",
    "preload",
    "prefetch",
    "manifest",
    "modulepreload",
}


class _Loads(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str]] = []  # (kind, url)
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v or "" for k, v in attrs}
        if tag == "script" and a.get("src"):
            self.refs.append(("script", a["src"]))
        elif tag == "link" and a.get("href"):
            rels = set(a.get("rel", "").lower().split())
            if rels & _LOADED_LINKS:
                kind = "stylesheet" if "stylesheet" in rels else "icon"
                self.refs.append((kind, a["href"]))
        elif tag in ("img", "source", "video", "audio", "iframe", "embed") and a.get("src"):
            self.refs.append(("image", a["src"]))
        elif tag == "object" and a.get("data"):
            self.refs.append(("image", a["data"]))
        if a.get("srcset"):
            self.refs += [("image", part.split()[0]) for part in a["srcset"].split(",")]
        if a.get("style"):
            self.refs += [("css", u) for u in _CSS_URL.findall(a["style"])]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.refs += [("css", u) for u in _CSS_URL.findall(data)]
            self.refs += [("css", u) for u in _CSS_IMPORT.findall(data)]


def loaded_refs(page: str) -> list[tuple[str, str]]:
    """``(kind, url)`` of everything the page makes the browser fetch (not ``<a>`` links)."""
    parser = _Loads()
    parser.feed(page)
    parser.close()
    return parser.refs


def is_external(url: str) -> bool:
    scheme = urlsplit(url.strip()).scheme.lower()
    return url.strip().startswith("//") or scheme in ("http", "https", "ftp", "ws", "wss")


def external_refs(path: Path) -> list[str]:
    """Network URLs an HTML page or stylesheet loads (``data:`` URIs and relative paths are local)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".css":
        refs = [("css", u) for u in _CSS_URL.findall(text) + _CSS_IMPORT.findall(text)]
    else:
        refs = loaded_refs(text)
    return [f"{path.name}: {kind} {url}" for kind, url in refs if is_external(url)]


def missing_local_refs(
    page: Path, kinds: tuple[str, ...] = ("script", "stylesheet", "icon", "image")
) -> list[str]:
    """Relative ``kinds`` references of ``page`` that point at no file."""
    missing = []
    for kind, url in loaded_refs(page.read_text(encoding="utf-8")):
        if kind not in kinds or is_external(url) or url.startswith(("data:", "#")):
            continue
        target = (page.parent / urlsplit(url).path).resolve()
        if not target.is_file():
            missing.append(f"{page.name}: {kind} {url}")
    return missing
