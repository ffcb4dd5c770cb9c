"""Shared fixtures for the integration tests (Studio browser tests, protocol clients).

`meltybase_kernel` is a factory: `meltybase_kernel(extra_toml="...", env={...})` starts a
real `meltybase serve` (see meltybase_kernel.py) and stops it with SIGTERM at the end of
the test; `module_kernel_factory` does the same for a whole module.
A failing test that used `browser` leaves a screenshot in $TEST_ARTIFACTS
(default /test-artifacts, else .build/test-artifacts).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from meltybase_kernel import MeltyBaseKernel, ROOT


def _factory():
    started: list[MeltyBaseKernel] = []

    def start(extra_toml: str = "", env: dict[str, str] | None = None) -> MeltyBaseKernel:
        kernel = MeltyBaseKernel(extra_toml=extra_toml, env=env)
        started.append(kernel)
        return kernel

    def stop_all():
        failures = []
        for kernel in reversed(started):
            code = kernel.stop()
            if code not in (0, -15):
                failures.append(f"meltybase exited with {code}; log tail:\n{kernel.log_text()[-4000:]}")
            kernel.cleanup()
        return failures

    return start, stop_all


@pytest.fixture
def meltybase_kernel():
    """Factory for kernels that live as long as the test."""
    start, stop_all = _factory()
    yield start
    failures = stop_all()
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def module_kernel_factory():
    """Factory for kernels shared by every test of a module."""
    start, stop_all = _factory()
    yield start
    failures = stop_all()
    assert not failures, "\n".join(failures)


def artifacts_directory() -> Path:
    given = os.environ.get("TEST_ARTIFACTS")
    for candidate in ([Path(given)] if given else []) + [Path("/test-artifacts"), ROOT / ".build" / "test-artifacts"]:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise RuntimeError("no writable directory for test artifacts")


def new_browser(width: int = 1280, height: int = 800):
    """Headless Chromium (Debian's chromium + chromium-driver) through Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1", "--lang=en-US",
                     "--disable-extensions", "--no-first-run", "--password-store=basic"):
        options.add_argument(argument)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_window_size(width, height)
    driver.implicitly_wait(0)
    return driver


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    # A failing test that used a session kernel (database/, realtime/, edge/) shows its log's end.
    if report.failed and "kernel" in item.fixturenames:
        kernel = item.funcargs.get("kernel")
        if kernel is not None and hasattr(kernel, "log_tail"):
            report.sections.append(("kernel log", f"{kernel.log_path} (last lines)\n{kernel.log_tail(3000)}"))
    if report.when == "call" and report.failed:
        driver = item.funcargs.get("browser")
        if driver is not None:
            target = artifacts_directory() / f"{item.name}.png"
            try:
                driver.save_screenshot(str(target))
                (artifacts_directory() / f"{item.name}.html").write_text(driver.page_source)
                report.sections.append(("screenshot", str(target)))
            except Exception as error:  # the browser may be gone
                report.sections.append(("screenshot", f"failed: {error}"))


@pytest.fixture(scope="module")
def module_browser():
    driver = new_browser()
    yield driver
    driver.quit()


@pytest.fixture
def browser(module_browser):
    """The module's browser, for one test (a failure saves its screenshot)."""
    return module_browser
