"""The data-quality report (GX Data Docs) is complete with no network, and shows severity.

The site comes from a real validation (real GX, generated data with two anomalies so the warning
suite fails); the browser tests open it in headless Chromium with every host unresolvable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from jobs.core.schema import COLUMNS
from jobs.core.synthetic import make_abalone, to_csv_bytes
from tests.browser import find_chromium, probe, screenshot
from tests.html_assets import external_refs, is_external, loaded_refs, missing_local_refs
from validation import suite as contract
from validation import validate_batch
from validation.offline import VENDOR_DIR, manifest

ASSETS = Path(contract.__file__).parent / "assets"
CHROMIUM = find_chromium()
browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary (apt-get install chromium, or set ABALONE_CHROMIUM)",
)


def batch_with_anomalies() -> bytes:
    """600 generated rows; one too tall (warning: quarantined) and one wider than long."""
    frame = make_abalone(600, seed=5)
    frame.loc[3, "height"] = 0.9
    frame.loc[7, "diameter"] = frame.loc[7, "length"] + 0.05
    return to_csv_bytes(frame[list(COLUMNS)], header=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    docs = tmp_path_factory.mktemp("report") / "data_docs"
    result = validate_batch(
        batch_with_anomalies(), ingest_id="offline-test", max_warning_fraction=0.05, docs_dir=docs
    )
    assert result.status == "accepted" and len(result.quarantined) == 2
    return docs


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if VENDOR_DIR not in p.as_posix())


def validation_page(site: Path, kind: str) -> Path:
    name = contract.suite_name(kind, with_target=True)
    (page,) = (site / "validations" / name).rglob("*.html")
    return page


# ---- the vendored files ---------------------------------------------------------------------------


def gx_template_urls() -> set[str]:
    """Every network URL GX's installed page templates and default styles load."""
    import great_expectations

    root = Path(great_expectations.__file__).parent / "render" / "view"
    urls = set()
    for path in [*root.glob("templates/*.j2"), *root.glob("static/styles/*.css")]:
        text = path.read_text()
        refs = loaded_refs(text) + [("css", u) for u in re.findall(r"url\('([^']+)'\)", text)]
        urls |= {url for _kind, url in refs if is_external(url)}
        # Jinja-built URLs: the logo is "<bucket>/" + "logo-long.png"
        for prefix in re.findall(r'static_images_dir = "(https://[^"]+)"', text):
            urls |= {prefix + name for name in re.findall(r'"([\w-]+\.png)"', text)}
    return {u for u in urls if "{{" not in u}


def test_every_cdn_url_of_the_gx_templates_has_a_vendored_file():
    doc = manifest()
    known = {a["url"] for a in doc["assets"]} | {i["url"] for i in doc["gx_images"]}
    found = gx_template_urls()
    assert len(found) >= 17  # 16 CDN files + the logo; a GX upgrade changing them fails here
    assert found <= known, f"not vendored: {sorted(found - known)}"


def test_vendored_files_are_the_recorded_npm_files_with_licences():
    doc = manifest()
    on_disk = {
        p.relative_to(ASSETS).as_posix()
        for p in ASSETS.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", "README.md")
    }
    assert on_disk == set(doc["files"])
    for rel, digest in doc["files"].items():
        assert hashlib.sha256((ASSETS / rel).read_bytes()).hexdigest() == digest, rel
    for asset in doc["assets"]:
        assert doc["files"][asset["file"]] == asset["sha256"]
        package_dir = ASSETS / asset["file"].split("/")[0]
        assert list(package_dir.glob("LICENSE*")), f"no licence file in {package_dir.name}"


def test_bootstrap_and_popper_match_the_integrity_hashes_gx_pins():
    import great_expectations

    template = (
        Path(great_expectations.__file__).parent / "render/view/templates/js_script_imports.j2"
    ).read_text()
    pinned = dict(re.findall(r'src="(https://[^"]+)" integrity="sha384-([^"]+)"', template))
    assert len(pinned) == 2
    files = {a["url"]: a["file"] for a in manifest()["assets"]}
    for url, digest in pinned.items():
        data = (ASSETS / files[url]).read_bytes()
        assert base64.b64encode(hashlib.sha384(data).digest()).decode() == digest, url


# ---- the generated site ---------------------------------------------------------------------------


def test_no_page_of_the_site_loads_anything_from_the_network(site):
    found = pages(site)
    assert len(found) == 5  # index, 2 suite pages, 2 validation pages
    stylesheets = list((site / VENDOR_DIR).rglob("*.css"))
    assert stylesheets
    outside = [ref for path in found + stylesheets for ref in external_refs(path)]
    assert outside == []
    broken = [ref for path in found for ref in missing_local_refs(path)]
    assert broken == []


def test_site_holds_only_images_its_pages_use(site):
    """GX copies its tutorial GIFs (3.4 MB) into every site; no page shows them."""
    images = sorted(p.name for p in (site / "static" / "images").iterdir())
    assert not [name for name in images if name.endswith(".gif")]
    texts = [p.read_text(encoding="utf-8") for p in pages(site)]
    assert images and all(any(name in text for text in texts) for name in images), images
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert size < 4_000_000, size  # the vendored assets (2.8 MB) are most of it


def test_site_carries_the_vendored_licences(site):
    for package_dir in (site / VENDOR_DIR).iterdir():
        assert list(package_dir.glob("LICENSE*")), package_dir.name


def test_validation_pages_say_what_a_failure_means(site):
    warning = validation_page(site, contract.WARNING).read_text()
    critical = validation_page(site, contract.CRITICAL).read_text()
    assert "Failed" in warning  # two rows failed the warning suite…
    assert "Severity: warning." in warning  # …which the page explains right there
    assert "rows were quarantined, not by itself that the batch was rejected" in warning
    assert "Severity: critical." in critical
    assert "rejects the whole batch" in critical
    assert "Succeeded" in critical
    # the suite pages carry the same notes, the index names each suite by its consequence
    suites = {p.stem: p.read_text() for p in (site / "expectations").glob("*.html")}
    assert set(suites) == {
        "abalone_batch_critical_rejects_batch",
        "abalone_batch_warning_quarantines_rows",
    }
    assert "Severity: warning." in suites["abalone_batch_warning_quarantines_rows"]
    index = (site / "index.html").read_text()
    assert "abalone_batch_warning_quarantines_rows" in index


# ---- in a browser with the network off ------------------------------------------------------------


def artifact_dir(tmp_path: Path) -> Path:
    """``$ABALONE_TEST_ARTIFACTS`` if set (CI keeps it), else the test's tmp dir."""
    return Path(os.environ.get("ABALONE_TEST_ARTIFACTS") or tmp_path)


@pytest.mark.browser
@browser
def test_the_network_is_really_off_in_the_browser_tests(tmp_path):
    # the same page the GX template would produce: jQuery from its CDN, then a probe
    page = tmp_path / "cdn.html"
    page.write_text(
        '<!doctype html><html><head><script src="https://code.jquery.com/jquery-3.7.1.min.js">'
        '</script></head><body class="navbar"><p>x</p></body></html>'
    )
    seen = probe(CHROMIUM, page)
    assert seen["jquery"] == "undefined"


@pytest.mark.browser
@browser
def test_index_lists_the_validations_styled_with_no_network(site, tmp_path):
    seen = probe(CHROMIUM, site / "index.html")
    # the list of validations is drawn by bootstrap-table (jQuery plugin) from the page's data
    assert seen["jquery"] == "function" and seen["bootstrapTable"] is True
    assert seen["tables"] == 2  # validation results and expectation suites tabs
    rows = "\n".join(seen["rows"])
    for kind in (contract.CRITICAL, contract.WARNING):
        assert contract.suite_name(kind, with_target=True) in rows
    assert "offline-test" in rows  # the run name
    # Bootstrap's stylesheet applied (reboot: no body margin, system font; the navbar is a flex
    # box) and Font Awesome's web font loaded for the status icons
    assert seen["bodyMargin"] == "0px"
    assert seen["bodyFont"].startswith("-apple-system")
    assert seen["navbarDisplay"] == "flex"
    assert "Font Awesome 6 Free" in seen["iconFont"] and seen["iconFontLoaded"] is True
    png = screenshot(CHROMIUM, site / "index.html", artifact_dir(tmp_path) / "data-docs-index.png")
    assert png.stat().st_size > 10_000  # a rendered page, not a blank one


@pytest.mark.browser
@browser
def test_validation_page_renders_results_with_no_network(site, tmp_path):
    page = validation_page(site, contract.WARNING)
    seen = probe(CHROMIUM, page)
    assert seen["jquery"] == "function" and seen["bodyMargin"] == "0px"
    assert seen["tables"] >= 3  # a bootstrap-table per column section
    cells = "\n".join(seen["rows"])
    assert "0.9" in cells  # the too-tall row is listed among the unexpected values
    png = screenshot(CHROMIUM, page, artifact_dir(tmp_path) / "data-docs-validation.png")
    assert png.stat().st_size > 10_000


# ---- the published site (S3) ----------------------------------------------------------------------


def test_site_published_to_s3_is_complete_with_content_types(
    abalone_home, tmp_path, aws_env, monkeypatch
):
    from jobs.aws.reports import download_report
    from jobs.cli import app

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="abalone-reports")
    monkeypatch.setenv("ABALONE_REPORTS", "s3://abalone-reports/dev")
    source = tmp_path / "batch.csv"
    source.write_bytes(batch_with_anomalies())
    result = CliRunner().invoke(app, ["ingest", "--source", str(source), "--json"])
    assert result.exit_code == 0, result.output
    ingest_id = json.loads(result.stdout)["ingest_id"]
    prefix = f"dev/{ingest_id}/data_docs/"
    # what `abalone reports --download` does: the whole site, opened from disk
    page = download_report("s3://abalone-reports/dev", tmp_path / "downloaded", s3=s3)
    local = tmp_path / "downloaded" / ingest_id / "data_docs"
    assert page == local / "index.html"
    assert (tmp_path / "downloaded" / ingest_id / "summary.json").is_file()
    html_pages = pages(local)
    assert len(html_pages) == 5
    assert [ref for p in html_pages for ref in external_refs(p)] == []
    assert [ref for p in html_pages for ref in missing_local_refs(p)] == []

    def content_type(rel: str) -> str:
        return s3.head_object(Bucket="abalone-reports", Key=prefix + rel)["ContentType"]

    assert content_type("index.html") == "text/html"
    assert content_type(f"{VENDOR_DIR}/bootstrap@4.3.1/dist/css/bootstrap.min.css") == "text/css"
    assert content_type(f"{VENDOR_DIR}/jquery@3.7.1/dist/jquery.min.js").endswith("javascript")


def test_assets_are_copied_when_validation_is_imported_from_a_zip(tmp_path):
    # the Glue job imports jobs/ and validation/ from the zip passed as --extra-py-files
    import subprocess
    import sys
    import zipfile

    from components.packaging import REPO_ROOT, package_files

    archive = tmp_path / "code.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in package_files():
            zf.write(REPO_ROOT / rel, rel)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
        "import validation.offline as o\n"
        "assert '.zip' in o.__file__, o.__file__\n"
        "o.copy_assets(Path(sys.argv[2]))\n"
    )
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-c", script, str(archive), str(site)], check=True, cwd=tmp_path
    )
    copied = {p.relative_to(site / VENDOR_DIR).as_posix() for p in site.rglob("*") if p.is_file()}
    assert copied == set(manifest()["files"])
