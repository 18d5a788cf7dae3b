"""A reviewer's session in the OHIF viewer that monailabel 0.8.5 ships, in Debian's headless Chromium (selenium).

    .venv-label/bin/python tests/label/ohif_driver.py --server URL --study UID --segment LABEL --out DIR

The viewer is the MONAI Label server's own (`URL/ohif/`); it reads the study through the server's
DICOMweb proxy. The steps, each as a person does them (clicks and typing; the page's own objects
are only read, to report what it shows):

1. MONAI Label mode (`/ohif/monai-label`): type the server's address into the panel, connect, run
   the model `stations`; report the segments (names, voxels, the label map) and take screenshots.
2. Segmentation mode (`/ohif/segmentation`): open the app's station SEG (stored by the inference),
   delete the segment LABEL (the correction), "Download DICOM SEG".
3. Study list (`/ohif/`): "Upload" the downloaded SEG, which OHIF stores through the proxy into the
   PACS as a new series of the study (the bundled OHIF's "Export DICOM SEG" fails, see
   docs/monai-label.md).

Writes DIR/observations.json and DIR/*.png. Exit status 3 (reason in DIR/chromium_unavailable.txt)
when Chromium or its driver cannot start; any other failure: status 1 with a screenshot.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SEG_LOAD_TRIES = 3  # opening the SEG in the Segmentation mode (Session.open_seg)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--window-size=1600,1000", "--no-first-run", "--disable-extensions", "--disable-sync", "--disable-background-networking")
# uncaught errors and rejected promises, recorded before the page's own scripts run
ERROR_HOOK = """
window.__pageErrors = [];
window.addEventListener('error', e => window.__pageErrors.push('error: ' + (e.message || e.type) + ' @ ' + (e.filename || '')));
window.addEventListener('unhandledrejection', e => window.__pageErrors.push(
    'unhandled rejection: ' + ((e.reason && (e.reason.stack || e.reason.message)) || String(e.reason))));
"""
# what the MONAI Label mode shows: the segmentation's segments and its label map (read, not changed)
READ_SEGMENTATION = """
const ss = window.services.segmentationService;
const seg = ss.getSegmentations()[0];
const segments = Object.values(seg.segments).filter(s => s).map(s => ({index: s.segmentIndex, label: s.label}));
const volume = ss.getLabelmapVolume(seg.segmentationId);
const data = volume.voxelManager.getCompleteScalarDataArray();
const counts = {};
for (let i = 0; i < data.length; i++) { if (data[i]) counts[data[i]] = (counts[data[i]] || 0) + 1; }
let text = '';
const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
return {segments, counts, dims: volume.dimensions, dtype: data.constructor.name, labelmap_b64: btoa(text)};
"""


class Session:
    """One Chromium window on the MONAI Label server's OHIF, with what it logged."""

    def __init__(self, server: str, out: Path) -> None:
        self.server = server.rstrip("/")
        self.out = out
        self.downloads = out / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.profile = Path(tempfile.mkdtemp(prefix="ohif-chromium-"))
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self.profile}"):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK})
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(self.downloads)})
        self.console: list[dict[str, str]] = []
        self.page_errors: list[str] = []
        self.screenshots: list[str] = []
        self.retries: list[dict[str, Any]] = []  # the Segmentation mode's failed loads (see open_seg)

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------------
    def open(self, path: str) -> None:
        self.collect()
        self.driver.get(self.server + path)

    def wait(self, script: str, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.driver.execute_script(script)
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def wait_text(self, text: str, timeout_s: float) -> None:
        self.wait(f"return document.body && document.body.innerText.includes({json.dumps(text)})", timeout_s, repr(text))

    def visible(self, xpath: str) -> list[WebElement]:
        return [e for e in self.driver.find_elements(By.XPATH, xpath) if e.is_displayed()]

    def click_button(self, text: str, timeout_s: float = 15) -> None:
        self.wait(f"return [...document.querySelectorAll('button')].some(b => b.innerText.trim() == {json.dumps(text)})", timeout_s, text)
        self.visible(f"//button[normalize-space()={json.dumps(text)}]")[0].click()

    def click_menu_item(self, text: str, exact: bool = True, timeout_s: float = 10) -> None:
        test = f"e.innerText.trim() == {json.dumps(text)}" if exact else f"e.innerText.includes({json.dumps(text)})"
        self.wait(f"return [...document.querySelectorAll('[role=menuitem]')].some(e => {test})", timeout_s, f"menu item {text}")
        items = self.driver.find_elements(By.CSS_SELECTOR, "[role='menuitem']")
        next(i for i in items if (i.text.strip() == text if exact else text in i.text)).click()

    def screenshot(self, name: str) -> None:
        path = self.out / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.screenshots.append(str(path))

    def collect(self) -> None:
        """Move the browser's console entries and the page's uncaught errors into this session's record."""
        for e in self.driver.get_log("browser"):
            if e["level"] in ("SEVERE", "WARNING") and "Set value to model directly" not in e["message"]:
                self.console.append({"level": e["level"], "message": e["message"][:2000]})
        try:
            self.page_errors += self.driver.execute_script("const e = window.__pageErrors || []; window.__pageErrors = []; return e;")
        except WebDriverException:
            pass

    def dismiss_notice(self) -> None:
        """OHIF's 'for investigational use only' banner covers the viewports' lower part."""
        buttons = self.visible("//button[normalize-space()='Confirm and Hide']")
        if buttons:
            buttons[0].click()

    # -- 1. MONAI Label mode -----------------------------------------------------------------------
    def run_stations(self, study: str) -> dict[str, Any]:
        t0 = time.monotonic()
        self.open(f"/ohif/monai-label?StudyInstanceUIDs={study}")
        self.wait("return document.querySelectorAll('canvas').length >= 3 && document.getElementById('monailabelServerURL')", 180, "the viewer")
        viewer_s = time.monotonic() - t0
        self.dismiss_notice()
        for _ in range(30):  # the panel re-renders while the viewports settle
            try:
                field = self.driver.find_element(By.ID, "monailabelServerURL")
                field.send_keys(Keys.CONTROL, "a")  # replace the text, never empty it (the panel fails on an empty address)
                field.send_keys(self.server + "/")
                self.driver.find_element(By.CSS_SELECTOR, ".settingsTable button.actionButton").click()
                break
            except (StaleElementReferenceException, WebDriverException):
                time.sleep(1)
        self.wait_text("Auto-Segmentation", 60)
        self.screenshot("1_monai_label_connected")
        t1 = time.monotonic()
        self.visible("//button[normalize-space()='Run']")[0].click()
        self.wait("return document.body.innerText.includes('Running Segmentation - Successful') || "
                  "document.body.innerText.includes('Failed to Run Segmentation')", 600, "the inference")
        infer_s = time.monotonic() - t1
        failed = "Failed to Run Segmentation" in self.driver.execute_script("return document.body.innerText")
        time.sleep(2)  # the panel writes the label map after the notice
        shown = self.driver.execute_script(READ_SEGMENTATION)
        self.screenshot("2_monai_label_stations")
        self.show_slice_with_most_segments()
        self.screenshot("3_monai_label_stations_mid")
        self.collect()
        return {"failed": failed, "viewer_s": round(viewer_s, 1), "infer_s": round(infer_s, 1), **shown}

    def show_slice_with_most_segments(self) -> None:
        """Scroll the axial view to the slice where the most stations meet (the view a reviewer picks first)."""
        self.driver.execute_script("""
const ss = window.services.segmentationService;
const seg = ss.getSegmentations()[0];
const volume = ss.getLabelmapVolume(seg.segmentationId);
const [nx, ny, nz] = volume.dimensions;
const data = volume.voxelManager.getCompleteScalarDataArray();
let best = 0, bestK = 0;
for (let k = 0; k < nz; k++) {
  const seen = new Set();
  for (let i = k * nx * ny; i < (k + 1) * nx * ny; i++) if (data[i]) seen.add(data[i]);
  if (seen.size > best) { best = seen.size; bestK = k; }
}
const ijk = [Math.floor(nx / 2), Math.floor(ny / 2), bestK];
const world = volume.imageData.indexToWorld(ijk);
for (const vp of window.cornerstone.getRenderingEngines()[0].getViewports()) {
  if (vp.jumpToWorld) vp.jumpToWorld(world);
}
""")
        time.sleep(2)

    def show_stack_slice_with_most_segments(self) -> None:
        """The same for the Segmentation mode's stack viewports (a label image per CT slice)."""
        self.driver.execute_script("""
const seg = window.services.segmentationService.getSegmentations()[0];
const ids = (seg.representationData.Labelmap || {}).imageIds || [];
let best = 0, bestRef = null;
for (const id of ids) {
  const image = window.cornerstone.cache.getImage(id);
  if (!image) continue;
  const px = image.getPixelData(), seen = new Set();
  for (let i = 0; i < px.length; i++) if (px[i]) seen.add(px[i]);
  if (seen.size > best) { best = seen.size; bestRef = image.referencedImageId; }
}
for (const vp of window.cornerstone.getRenderingEngines()[0].getViewports()) {
  const stack = vp.getImageIds ? vp.getImageIds() : [];
  if (bestRef && stack.includes(bestRef) && vp.setImageIdIndex) vp.setImageIdIndex(stack.indexOf(bestRef));
}
""")
        time.sleep(2)

    # -- 2. Segmentation mode: the correction ------------------------------------------------------
    def open_seg(self, study: str, seg_description: str, segment: str) -> str:
        """Open the app's station SEG in the Segmentation mode until `segment`'s row stands in the panel; the
        series list's text. Under load OHIF's renderer sometimes throws while the SEG loads (vtk.js
        `releaseGraphicsResources` of a null context: "Something went wrong"): a reviewer reopens the study, and so
        does this, at most `SEG_LOAD_TRIES` times; each failed try is kept in `retries` with its errors and screenshot."""
        row = f"//span[normalize-space()={json.dumps(segment)}]/ancestor::div[@data-cy='data-row']"
        for attempt in range(1, SEG_LOAD_TRIES + 1):
            logged = len(self.console)
            self.open(f"/ohif/segmentation?StudyInstanceUIDs={study}")
            try:
                self.wait_text(seg_description, 180)
                self.wait("return document.querySelectorAll('canvas').length >= 1", 60, "the viewports")
                self.dismiss_notice()
                time.sleep(2)
                listed = self.driver.execute_script("return document.body.innerText")  # the series list: CT, PET and the app's series
                thumbnail = self.visible(f"//*[contains(text(), {json.dumps(seg_description)})]")[0]
                ActionChains(self.driver).double_click(thumbnail).perform()
                self.click_button("Yes", 60)  # "Do you want to open this Segmentation?"
                self.wait("return window.services.segmentationService.getSegmentations().length > 0", 120, "the SEG's segments")
                self.wait(f"return document.evaluate({json.dumps(row)}, document, null, 9, null).singleNodeValue !== null", 30, f"the row of {segment}")
                time.sleep(2)  # the crash, when it comes, comes while the viewports render the SEG
                if "Something went wrong" not in self.driver.execute_script("return document.body.innerText"):
                    return listed
                raise RuntimeError("OHIF showed 'Something went wrong' after loading the SEG")
            except (TimeoutError, RuntimeError, WebDriverException) as exc:
                if attempt == SEG_LOAD_TRIES:
                    raise
                self.screenshot(f"4_segmentation_mode_try_{attempt}_failed")
                self.collect()
                self.retries.append({"attempt": attempt, "failure": f"{type(exc).__name__}: {str(exc)[:500]}",
                                     "page_errors": self.page_errors, "console": self.console[logged:], "screenshot": self.screenshots[-1]})
                self.page_errors, self.console = [], self.console[:logged]
        raise AssertionError("unreachable")

    def correct(self, study: str, seg_description: str, segment: str) -> dict[str, Any]:
        listed = self.open_seg(study, seg_description, segment)
        self.show_stack_slice_with_most_segments()
        self.screenshot("4_segmentation_mode_loaded")
        before = self.segment_labels()
        row = self.driver.find_element(By.XPATH, f"//span[normalize-space()={json.dumps(segment)}]/ancestor::div[@data-cy='data-row']")
        ActionChains(self.driver).move_to_element(row).perform()
        row.find_element(By.CSS_SELECTOR, "button[aria-label='Actions']").click()
        self.click_menu_item("Delete")
        self.wait(f"return !document.body.innerText.includes({json.dumps(segment)})", 20, "the segment to go")
        after = self.segment_labels()
        header = self.driver.execute_script("return [...document.querySelectorAll('button[aria-haspopup=menu]')]"
                                            ".find(b => !b.closest('[data-cy=data-row]') && b.offsetParent && b.closest('.bg-primary-dark'))")
        header.click()
        self.click_menu_item("Export & Download", exact=False)
        for old in self.downloads.iterdir():
            old.unlink()
        self.click_menu_item("Download DICOM SEG")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [p for p in self.downloads.iterdir() if not p.name.endswith(".crdownload")]:
            time.sleep(0.5)
        files = [p for p in self.downloads.iterdir() if not p.name.endswith(".crdownload")]
        if len(files) != 1:
            raise RuntimeError(f"Download DICOM SEG left {len(files)} files in {self.downloads}")
        reviewed = self.out / "reviewed_seg.dcm"
        files[0].replace(reviewed)
        self.screenshot("5_segmentation_mode_corrected")
        self.collect()
        return {"series_listed": listed, "segments_before": before, "segments_after": after, "downloaded": str(reviewed)}

    def segment_labels(self) -> list[str]:
        return self.driver.execute_script("const s = window.services.segmentationService.getSegmentations()[0];"
                                          "return Object.values(s.segments).filter(x => x).map(x => x.label);")

    # -- 3. Study list: upload ---------------------------------------------------------------------
    def upload(self, path: Path) -> dict[str, Any]:
        self.open("/ohif/")
        self.wait_text("Upload", 120)
        self.visible("//*[normalize-space(text())='Upload']")[0].click()
        self.wait("return document.querySelectorAll('input[type=file]').length > 0", 30, "the upload dialog")
        self.driver.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(str(path))
        self.wait("return document.body.innerText.includes('Completed!') || document.body.innerText.includes('failed')", 120, "the upload")
        text = self.driver.execute_script("return document.body.innerText")
        self.screenshot("6_study_list_uploaded")
        self.collect()
        return {"completed": "1 file completed" in text and "failed" not in text.lower()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--study", required=True, help="StudyInstanceUID")
    ap.add_argument("--seg-description", required=True, help="SeriesDescription of the app's station SEG")
    ap.add_argument("--segment", required=True, help="label of the segment the reviewer deletes")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        session = Session(args.server, args.out)
    except WebDriverException as exc:
        (args.out / "chromium_unavailable.txt").write_text(f"{CHROMIUM} with {CHROMEDRIVER} did not start: {exc.msg or exc}")
        return 3
    record: dict[str, Any] = {}
    try:
        record["monai_label"] = session.run_stations(args.study)
        record["correction"] = session.correct(args.study, args.seg_description, args.segment)
        record["upload"] = session.upload(Path(record["correction"]["downloaded"]))
        status = 0
    except Exception as exc:  # a failed step: keep what the page showed
        record["failure"] = f"{type(exc).__name__}: {exc}"
        session.screenshot("failure")
        status = 1
    finally:
        session.collect()
        record["console"] = session.console
        record["page_errors"] = session.page_errors
        record["screenshots"] = session.screenshots
        record["segmentation_mode_retries"] = session.retries
        session.close()
    labelmap = record.get("monai_label", {}).pop("labelmap_b64", None)
    if labelmap is not None:
        (args.out / "labelmap.u8").write_bytes(base64.b64decode(labelmap))
    (args.out / "observations.json").write_text(json.dumps(record, indent=1))
    if status:
        print(record["failure"], file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
