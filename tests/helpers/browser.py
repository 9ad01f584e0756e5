"""Headless Chromium from the system packages (apt: chromium, chromium-driver) driven by Selenium.

Nothing is downloaded: the driver's path is given explicitly, so Selenium Manager never runs. When the
browser cannot start, `start_chromium` raises BrowserUnavailable with the reason; tests fail on it (a
skipped browser test would hide a broken console)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("FTAGENT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FTAGENT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1366,900")


class BrowserUnavailable(RuntimeError):
    """Chromium or its driver is missing or does not start."""


def start_chromium(profile: Path | None = None):
    """A Selenium Chrome driver on the system Chromium with a fresh profile folder."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look anything up
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        raise BrowserUnavailable(f"missing {', '.join(missing)}: apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        raise BrowserUnavailable(f"selenium is not installed ({error}): pip install -e '.[test]'") from error
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile or tempfile.mkdtemp(prefix='ftagent-chromium-')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as error:  # the reason goes into the test failure
        raise BrowserUnavailable(f"Chromium did not start ({type(error).__name__}: {error})") from error


def full_page_screenshot(driver, path: Path) -> Path:
    """The whole page (the window grown to the document's height), then the window size restored."""
    size = driver.get_window_size()
    height = driver.execute_script("return Math.max(document.body.scrollHeight, window.innerHeight)")
    driver.set_window_size(size["width"], min(int(height) + 120, 8000))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(size["width"], size["height"])
    return path

