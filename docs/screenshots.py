"""Screenshots of the reports for the README: ``python docs/screenshots.py`` → ``docs/img/*.png``.

1. The data-quality report: the real UCI file validated with the Data Docs site built (exactly what
   ``abalone ingest`` writes), its index and the warning suite's validation page.
2. The drift report: ``abalone monitor`` (``jobs.monitoring.monitor.monitor``) on captured traffic of only
   juveniles (sex ``I``) against a reference profile of the model trained on the whole file.

Pages are rendered by headless Chromium with the network off (``tests/browser.py``), so the
pictures also show that the reports are complete without it. PNGs are reduced to a 256-colour
palette to keep the repository small. Needs ``chromium`` (or ``$ABALONE_CHROMIUM``) and the real
data file (``$ABALONE_DATA``, else ``../shared/data/abalone.csv``, as the benchmarks).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._data import default_data  # noqa: E402
from tests.browser import find_chromium, screenshot  # noqa: E402

OUT = REPO / "docs" / "img"


def small_png(path: Path) -> Path:
    """Rewrite ``path`` as a 256-colour palette PNG (a fraction of the size, same look)."""
    from PIL import Image

    with Image.open(path) as img:
        reduced = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)
    return path


def data_quality_report(data: Path, work: Path) -> tuple[Path, Path]:
    """Validate the file into a Data Docs site; (index page, warning-suite validation page)."""
    from validation import suite as contract
    from validation import validate_batch

    docs = work / "data_docs"
    result = validate_batch(
        data.read_bytes(), ingest_id="uci-abalone", max_warning_fraction=0.05, docs_dir=docs
    )
    print(f"validated {data}: {result.status}, {len(result.quarantined)} rows quarantined")
    name = contract.suite_name(contract.WARNING, with_target=True)
    (page,) = (docs / "validations" / name).rglob("*.html")
    return docs / "index.html", page


def drift_report(data: Path, work: Path) -> Path:
    """A monitoring run on juvenile-only traffic; the path of its ``report.html``."""
    from jobs.adapters.settings import load_settings
    from jobs.core.model import build_model
    from jobs.core.profile import build_profile, dumps_profile
    from jobs.core.schema import TARGET
    from jobs.monitoring.monitor import monitor
    from tests.monitoring.test_monitor import write_own_capture
    from validation import validate_batch

    frame = validate_batch(
        data.read_bytes(), ingest_id="reference", max_warning_fraction=0.05, docs_dir=None
    ).accepted
    features = frame.drop(columns=TARGET)
    model = build_model().fit(features, frame[TARGET])
    reference = work / "reference_profile.json"
    reference.write_text(dumps_profile(build_profile(features, model.predict(features))))

    now = datetime.now(UTC).replace(microsecond=0)
    live = features[features["sex"] == "I"].sample(300, random_state=1)
    home = work / "home"
    # capture records exactly as `abalone serve` writes them
    write_own_capture(home / "capture", model, live, now - timedelta(minutes=30))
    result = monitor(load_settings("dev", home=str(home)), reference=str(reference), now=now)
    print(f"monitor: {result.summary['message']}")
    return Path(result.report_html)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("no chromium binary: apt-get install chromium, or set ABALONE_CHROMIUM")
    if not args.data.is_file():
        sys.exit(f"no data file at {args.data} (set ABALONE_DATA)")
    with tempfile.TemporaryDirectory(prefix="abalone-screenshots-") as tmp:
        work = Path(tmp)
        index, validation_page = data_quality_report(args.data, work)
        report = drift_report(args.data, work)
        shots = [
            (index, "data-docs-index.png", (1600, 540)),
            (validation_page, "data-docs-validation.png", (1280, 1040)),
            (report, "drift-report.png", (1280, 1000)),
        ]
        for page, name, size in shots:
            png = small_png(screenshot(chromium, page, args.out / name, size=size))
            print(
                f"{png.relative_to(REPO) if png.is_relative_to(REPO) else png}: "
                f"{png.stat().st_size / 1024:.0f} KiB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
