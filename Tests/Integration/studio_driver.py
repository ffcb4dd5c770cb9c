"""Selenium helpers for the Studio: find inputs by their labels, click buttons by their
text, wait for screens. Shared by test_studio.py and screenshots.py."""

from __future__ import annotations

import io
import time

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from instance_setup import next_totp  # noqa: F401  (re-exported for the Studio tests)

TIMEOUT = 20


def wait_for(driver, condition, timeout: float = TIMEOUT, message: str = ""):
    """Waits until `condition(driver)` is truthy (stale elements retried) and returns it."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition, message)


def wait_click(driver, find, message: str, timeout: float = TIMEOUT) -> None:
    """Clicks the first element `find(driver)` returns, once there is one; a list the page
    re-rendered in between (a stale element) is looked up again instead of failing."""
    def attempt(d):
        elements = find(d)
        if not elements:
            return False
        elements[0].click()
        return True
    wait_for(driver, attempt, timeout, message)


def heading(driver) -> str:
    return text_of(driver, "h1")


def wait_heading(driver, text: str, timeout: float = TIMEOUT) -> None:
    wait_for(driver, lambda d: heading(d) == text, timeout, f"heading {text!r} (now {heading(driver)!r}, at {driver.current_url})")


def labelled(driver, label: str, scope=None):
    """The input, textarea or select whose <label> reads `label` (labels are required)."""
    root = scope or driver
    labels = [l for l in root.find_elements(By.TAG_NAME, "label") if l.text.strip() == label and l.get_attribute("for")]
    assert labels, f"no label {label!r}"
    return driver.find_element(By.ID, labels[0].get_attribute("for"))


def fill(driver, label: str, value: str, scope=None) -> None:
    field = labelled(driver, label, scope)
    field.clear()
    field.send_keys(value)


def set_value(driver, label: str, value: str) -> None:
    """Sets a long value at once (send_keys types slowly) and fires input."""
    field = labelled(driver, label)
    driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", field, value)


def button(driver, text: str, scope=None):
    root = scope or driver
    found = [b for b in root.find_elements(By.XPATH, f".//button[normalize-space()={xpath_string(text)}] | .//a[normalize-space()={xpath_string(text)}]") if b.is_displayed()]
    assert found, f"no button {text!r}"
    return found[0]


def click(driver, text: str, scope=None) -> None:
    """Clicks the first visible, enabled button or link reading `text`, once there is one."""
    xpath = f".//button[normalize-space()={xpath_string(text)}] | .//a[normalize-space()={xpath_string(text)}]"
    wait_click(driver, lambda d: [b for b in (scope or d).find_elements(By.XPATH, xpath) if b.is_displayed() and b.is_enabled()],
               f"button {text!r}")


def field_error(driver, label: str) -> str:
    field = labelled(driver, label)
    error = driver.find_element(By.ID, field.get_attribute("id") + "-error")
    return error.text if error.is_displayed() else ""


def wait_field_error(driver, label: str, timeout: float = TIMEOUT) -> str:
    return wait_for(driver, lambda d: field_error(d, label), timeout, f"an error next to {label!r}")


def text_of(driver, css: str) -> str:
    """The rendered text of the first match ('' if none), read in one step (no stale elements)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)


def wait_text(driver, css: str, contains: str, timeout: float = TIMEOUT) -> str:
    return wait_for(driver, lambda d: contains in text_of(d, css) and text_of(d, css), timeout,
                    f"{css} containing {contains!r} (now {text_of(driver, css)!r})")


def xpath_string(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    return "concat('" + "', \"'\", '".join(text.split("'")) + "')"


def decode_qr(element) -> str:
    """Decodes the QR code an element shows, from a screenshot of it (zxing-cpp)."""
    import zxingcpp
    from PIL import Image

    element.parent.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    image = Image.open(io.BytesIO(element.screenshot_as_png)).convert("L")
    results = zxingcpp.read_barcodes(image)
    assert results, "no QR code found in the element's screenshot"
    return results[0].text
