"""report.html in headless Chromium: a real local run's page, and a large run's gallery paged.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) for Playwright; skipped without it.
The screenshot goes to ``$AUTOLABEL_SCREENSHOTS`` (default: the test's tmp folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workflow.reports.html import PAGE_SIZE, render_report

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium not found at /usr/bin/chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    remote: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(path.as_uri())
    return page, errors, remote


def tiles(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#tiles .tile .name").all_inner_texts()]


@pytest.mark.slow
def test_a_local_runs_report_opens_offline_with_its_overlays(
    browser: Any, run_out: Path, tmp_path: Path
) -> None:
    report = json.loads((run_out / "report.json").read_text())
    assert report["outputs"]["report_html"].endswith("/report.html")
    # FinishRun wrote it in the run's S3 prefix (copied out): in AWS the gallery links presigned frames
    data = json.loads(
        (run_out / "report.html").read_text().split('id="gallery-data">')[1].split("</script>")[0]
    )
    assert len(data) == report["labeled"]
    assert all(e["u"].startswith("https://") and "Signature=" in e["u"] for e in data)
    page, errors, remote = open_page(browser, run_out / "report.html")
    # Then the summary and sections are there
    assert page.locator("#summary .card .num").first.inner_text() == str(report["frames_found"])
    classes = page.locator("#classes tbody tr").all_inner_texts()
    assert any(r.startswith("car") for r in classes)
    assert page.locator("#scores svg.hist").count() >= 2
    assert "nanodet-coco" in page.locator("#scores").inner_text()
    assert "adjust" in page.locator("#routing").inner_text()
    # And the gallery shows every frame, its overlay loaded from OUT/overlays/
    page.locator("#gallery").scroll_into_view_if_needed()
    page.wait_for_function(
        "[...document.querySelectorAll('#tiles img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=10_000,
    )
    srcs = page.eval_on_selector_all("#tiles img", "els => els.map(e => e.getAttribute('src'))")
    drawn = [p for p in (run_out / "overlays").rglob("*") if p.is_file()]
    assert sorted(srcs) == sorted(p.relative_to(run_out).as_posix() for p in drawn)
    shots = Path(os.environ.get("AUTOLABEL_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    # Filtering by class keeps the frames with that class
    lines = [json.loads(x) for x in (run_out / "report-frames.jsonl").read_text().splitlines()]
    with_ped = sorted(Path(x["frame"]).name for x in lines if "pedestrian" in x.get("classes", []))
    page.select_option("#f-class", "pedestrian")
    assert sorted(tiles(page)) == with_ped
    page.select_option("#f-class", "")
    page.select_option("#f-route", "auto")
    assert tiles(page) == []  # every frame of this profile goes to people
    assert errors == [] and remote == []


def test_a_large_runs_gallery_is_paged_and_filters(browser: Any, tmp_path: Path) -> None:
    """5,000 listed frames: one page of thumbnails at a time, filters over all of them."""
    gallery = [
        {
            "frame": f"s3://in/drive/{i:06d}.jpg",
            "status": "labeled",
            "objects": 2,
            "route": ("auto", "verify", "adjust")[i % 3],
            "labeled_by": "machine",
            "classes": ["car"] if i % 2 else ["car", "pedestrian"],
            "min_score": (i % 100) / 100,
        }
        for i in range(5000)
    ]
    report = {"run_id": "big", "frames_found": 100_000, "labeled": 100_000, "objects_per_class": {"car": 5}}
    page_html = render_report(
        report,
        score_histogram={"m|car|3": 4, "m|car|9": 1},
        gallery=gallery,
        image_url=lambda f: "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
        colors={"car": "#2acf59"},
    )
    path = tmp_path / "report.html"
    path.write_text(page_html)
    page, errors, remote = open_page(browser, path)
    assert page.locator("#tiles img").count() == PAGE_SIZE
    assert "lists 5000 of the 100000 labeled frames" in page.locator("#gallery").inner_text()
    assert page.locator("#page").inner_text() == f"page 1 of {5000 // PAGE_SIZE + 1} · 5000 of 5000 frames"
    page.click("#next")
    assert tiles(page)[0] == f"{PAGE_SIZE:06d}.jpg"
    page.select_option("#f-route", "verify")
    page.fill("#f-min", "0.9")
    page.dispatch_event("#f-min", "change")
    expected = [g for g in gallery if g["route"] == "verify" and g["min_score"] >= 0.9]
    assert page.locator("#page").inner_text().endswith(f"{len(expected)} of 5000 frames")
    assert tiles(page)[0] == Path(expected[0]["frame"]).name
    # opened from a file, a thumbnail tries overlays/<stem>.jpg first (none here), then the frame's URL
    assert [e for e in errors if "ERR_FILE_NOT_FOUND" not in e] == [] and remote == []
