"""Data Docs that render with no network: vendored CDN assets and relative links.

Great Expectations' page templates load Bootstrap, jQuery, bootstrap-table, Font Awesome, Vega and
two images from public CDNs, and the index's list of validations is drawn by that JavaScript, so a
site opened without internet access is an empty page. ``assets/`` holds the exact files those URLs
serve (from their npm packages, with their licences; ``assets/manifest.json`` maps each URL to its
file and lists every file's sha256, ``assets/README.md`` says where each came from).

:func:`make_self_contained` runs after each site build: it copies the vendored files to the
site's ``static/vendor/`` and rewrites every page's asset URLs to paths relative to that page. The
pages keep GX's structure; only asset URLs change (plus the ``integrity``/``crossorigin``
attributes of the rewritten tags: a CORS fetch of a ``file://`` URL fails, and the SRI hashes are
checked by the tests instead). The GX logo, hot-linked from GX's S3 bucket with a tracking
parameter, points at the copy GX already writes to ``static/images/`` (so does the dark-mode logo,
which GX does not ship), and the favicon link of validation pages, one ``../`` short in GX's
template, points at GX's favicon.

Files are read with ``importlib.resources``, so this also works when ``validation`` is imported
from a zip (the Glue job's ``--extra-py-files``).
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path

VENDOR_DIR = "static/vendor"
_MANIFEST = "manifest.json"
# a URL ends where an attribute value or CSS url() ends; GX appends "?d=<id>" to its logo URL
_URL_TAIL = r"(?:\?[^\"'\s)<>]*)?(?![\w.@/-])"
_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_SRI_ATTRS = re.compile(r"\s+(?:integrity|crossorigin)=(?:\"[^\"]*\"|'[^']*')", re.IGNORECASE)
# GX's validation pages climb one directory too few to the favicon
_FAVICON = re.compile(r"(?<=href=\")(?:\.\.?/)*static/images/favicon\.ico(?=\")")


def _assets_root():
    return resources.files("validation").joinpath("assets")


@cache
def manifest() -> dict:
    """``assets/manifest.json``: ``assets`` (url, file, npm, license, sha256), ``gx_images``
    (url, site_file) and ``files`` (every vendored file → sha256)."""
    return json.loads(_assets_root().joinpath(_MANIFEST).read_text(encoding="utf-8"))


@cache
def _rewrites() -> tuple[re.Pattern[str], dict[str, str]]:
    """One pattern matching every known CDN URL, and each URL's site-relative replacement."""
    doc = manifest()
    targets = {a["url"]: f"{VENDOR_DIR}/{a['file']}" for a in doc["assets"]}
    targets.update({i["url"]: i["site_file"] for i in doc["gx_images"]})
    alternatives = "|".join(re.escape(u) for u in sorted(targets, key=len, reverse=True))
    return re.compile(f"({alternatives}){_URL_TAIL}"), targets


def copy_assets(site: Path) -> None:
    """Write the vendored files (and their licences) under ``site/static/vendor/``."""
    root = _assets_root()
    for rel in manifest()["files"]:
        dest = site / VENDOR_DIR / rel
        if dest.is_file():
            continue  # a site rebuilt in place already has them
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(root.joinpath(*rel.split("/")).read_bytes())


def localize(page: str, to_root: str) -> str:
    """``page`` with every known CDN URL replaced by ``to_root`` + the site-relative file."""
    pattern, targets = _rewrites()
    page = pattern.sub(lambda m: to_root + targets[m.group(1)], page)
    page = _FAVICON.sub(to_root + "static/images/favicon.ico", page)
    local = to_root + VENDOR_DIR + "/"
    return _TAG.sub(lambda m: _SRI_ATTRS.sub("", m[0]) if local in m[0] else m[0], page)


IMAGES_DIR = "static/images"


def prune_unused_images(site: Path) -> list[str]:
    """Delete what GX copies into ``static/images/`` but no page, stylesheet or script of the site
    refers to (two animated GIFs of its tutorial alone are 3.4 MB of every report). Returns the
    deleted names."""
    images = site / IMAGES_DIR
    if not images.is_dir():
        return []
    texts = [
        f.read_text(encoding="utf-8", errors="replace")
        for f in site.rglob("*")
        if f.suffix in (".html", ".css", ".js") and images not in f.parents
    ]
    removed = []
    for image in sorted(images.iterdir()):
        if image.is_file() and not any(image.name in text for text in texts):
            image.unlink()
            removed.append(image.name)
    return removed


def make_self_contained(site: Path) -> None:
    """Copy the assets into the Data Docs ``site``, point all its pages at them and drop the
    images nothing uses."""
    copy_assets(site)
    for page in site.rglob("*.html"):
        if VENDOR_DIR in page.relative_to(site).as_posix():
            continue
        up = os.path.relpath(site, page.parent)
        text = page.read_text(encoding="utf-8")
        new = localize(text, "" if up == "." else up.replace(os.sep, "/") + "/")
        if new != text:
            page.write_text(new, encoding="utf-8")
    prune_unused_images(site)
