"""Headless Chromium for the console's tests, through Debian's chromium and chromedriver.

`make test` installs both when they are missing (as root); elsewhere a test that
needs them is skipped, saying what to install. Screenshots go to
`test-artifacts/` at the top of the checkout (ROOMD_TEST_ARTIFACTS names another place).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def artifacts() -> Path:
    place = Path(os.environ.get("ROOMD_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    place.mkdir(parents=True, exist_ok=True)
    return place


@contextmanager
def headless_chromium(profile: Path) -> Iterator[object]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_binary = shutil.which("chromedriver")
    if chromium is None or driver_binary is None:
        pytest.skip("no Chromium here: install Debian's chromium and chromium-driver (make test does, as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_binary), options=options)
    try:
        yield driver
    finally:
        driver.quit()
