"""The web page in a real headless Chromium (Debian's ``chromium`` package) against a real server.

Skipped where the binary is absent. Screenshots go to the test's tmp_path and, when ``TEST_ARTIFACTS``
names a folder, there too.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)

from tests.conftest import (
    DEMO_BUNDLE,
    REPO,
    ServerProcess,
    encode,
    known_image,
    write_bundle,
)


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    return found


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium binary not found: install Debian's chromium package"
)
# A CPU server classifies in well under a second; the margin covers a busy shared machine.
ANSWER_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, demo_server: ServerProcess) -> Iterator[Page]:
    """The page, loaded; the test fails on a script error, a CSP refusal or a request elsewhere."""
    # reduced_motion: bars are measured at their final width, not mid-transition.
    context = browser.new_context(viewport={"width": 1000, "height": 900}, reduced_motion="reduce")
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"console: {message.text}")

    def on_request(request: Request) -> None:
        if not request.url.startswith((demo_server.url + "/", "data:", "blob:")):
            problems.append(f"request to another origin: {request.url}")

    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", on_console)
    page.on("request", on_request)
    page.goto(demo_server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("Model demo", timeout=ANSWER_TIMEOUT_MS)
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture
def save_screenshot(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """``save_screenshot(page, name)``: a full-page PNG in tmp_path and in $TEST_ARTIFACTS if set."""

    def save(page: Page, name: str) -> Path:
        test = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")  # parameters hold "/"
        path = tmp_path / f"{test}-{name}.png"
        page.screenshot(path=path, full_page=True)
        if folder := os.environ.get("TEST_ARTIFACTS"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(folder) / path.name)
        return path

    return save


def _card(page: Page, file_name: str) -> Locator:
    return page.locator(f'li.result[data-name="{file_name}"]')


def test_chosen_image_shows_its_thumbnail_top_label_latency_and_batch(
    page: Page, tmp_path: Path, save_screenshot
) -> None:
    image = tmp_path / "circle.png"
    known_image("circle", 0).save(image)
    page.get_by_label("Choose images to classify").set_input_files(image)

    card = _card(page, "circle.png")
    expect(card.locator(".prediction .label").first).to_have_text(
        "circle", timeout=ANSWER_TIMEOUT_MS
    )
    expect(card.locator(".prediction")).to_have_count(5)  # the default top_k
    top_score = float(card.locator(".prediction .score").first.inner_text().rstrip("%")) / 100
    bar = card.locator(".prediction .bar").first.bounding_box()
    fill = card.locator(".prediction .bar-fill").first.bounding_box()
    # The bar shows the score: its fill spans that fraction of the track.
    assert fill["width"] == pytest.approx(top_score * bar["width"], abs=2)
    expect(card.locator(".timing")).to_contain_text(re.compile(r"\d ms total · batch of \d+ · "))
    thumbnail = card.locator("img.thumb")
    expect(thumbnail).to_be_visible()
    expect(thumbnail).to_have_js_property("complete", True)
    assert thumbnail.evaluate("img => img.naturalWidth") > 0
    expect(page.locator("#status")).to_contain_text("circle.png: circle")
    assert save_screenshot(page, "classified").stat().st_size > 0


def test_non_image_shows_the_servers_error_message(
    page: Page, demo_server: ServerProcess, tmp_path: Path, save_screenshot
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are notes, not pixels\n")
    refused = httpx.post(
        demo_server.url + "/predict",
        files={"file": ("notes.txt", notes.read_bytes(), "text/plain")},
        timeout=30,
    )
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]

    page.locator("#file-input").set_input_files(notes)

    card = _card(page, "notes.txt")
    expect(card.locator(".error")).to_contain_text(message, timeout=ANSWER_TIMEOUT_MS)
    expect(card.locator(".error")).to_contain_text("Not a usable image")
    expect(card.locator(".no-preview")).to_be_visible()  # the browser could not draw it either
    expect(card.locator(".prediction")).to_have_count(0)
    expect(page.locator("#status")).to_contain_text(message)
    save_screenshot(page, "error")


@pytest.mark.parametrize(
    ("status", "code", "message", "headers", "shown"),
    [
        (
            503,
            "overloaded",
            "12 requests in flight",
            {"Retry-After": "2"},
            "The server is busy: 12 requests in flight. Retry after 2 s.",
        ),
        (
            413,
            "image_too_large",
            "file[0] (big.png): 90000000 pixels",
            {},
            "Too large: file[0] (big.png): 90000000 pixels",
        ),
        (
            401,
            "unauthorized",
            "invalid API key",
            {"WWW-Authenticate": "Bearer"},
            "API key needed or not accepted: invalid API key",
        ),
    ],
)
def test_error_answers_are_shown_with_their_message(
    page: Page,
    tmp_path: Path,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str],
    shown: str,
) -> None:
    # Answers that a quiet test server does not give on demand, in the server's own error shape.
    page.route(
        "**/predict?*",
        lambda route: route.fulfill(
            status=status, headers=headers, json={"error": {"code": code, "message": message}}
        ),
    )
    image = tmp_path / "big.png"
    known_image("ring", 3).save(image)
    page.locator("#file-input").set_input_files(image)
    expect(_card(page, "big.png").locator(".error")).to_have_text(shown)
    expect(page.locator("#status")).to_have_text(f"big.png: {shown}")
    # A refused key brings up the key field, focusable by its label, even if the page hid it.
    expect(page.get_by_label("API key")).to_be_visible(visible=status == 401)


def test_api_key_typed_after_a_401_is_sent_as_a_bearer_token(page: Page, tmp_path: Path) -> None:
    sent: list[str | None] = []

    def keyed(route: Route) -> None:  # a server with keys, in front of the open test server
        sent.append(route.request.headers.get("authorization"))
        if sent[-1] is None:
            body = {"error": {"code": "unauthorized", "message": "missing bearer token"}}
            route.fulfill(status=401, json=body)
        else:
            route.continue_()

    page.route("**/predict?*", keyed)
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    known_image("cross", 4).save(first)
    known_image("cross", 4).save(second)
    page.locator("#file-input").set_input_files(first)
    expect(_card(page, "first.png").locator(".error")).to_contain_text("missing bearer token")

    page.get_by_label("API key").fill("secret-key-1")
    page.locator("#file-input").set_input_files(second)
    expect(_card(page, "second.png").locator(".prediction .label").first).to_have_text(
        "cross", timeout=ANSWER_TIMEOUT_MS
    )
    assert sent == [None, "Bearer secret-key-1"]


def test_dropped_image_is_classified(page: Page) -> None:
    png = base64.b64encode(encode(known_image("square", 1), "PNG")).decode()
    files = page.evaluate_handle(
        """png => {
            const bytes = Uint8Array.from(atob(png), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return data;
        }""",
        png,
    )
    page.locator("#drop-zone").dispatch_event("drop", {"dataTransfer": files})
    expect(_card(page, "dropped.png").locator(".prediction .label").first).to_have_text(
        "square", timeout=ANSWER_TIMEOUT_MS
    )


def test_file_input_is_reached_by_keyboard_with_a_visible_focus(page: Page) -> None:
    page.keyboard.press("Tab")
    file_input = page.locator("#file-input")
    expect(file_input).to_be_focused()
    assert file_input.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    assert page.locator("#api-key-field").is_hidden()  # no keys configured on this server


def test_explain_shows_the_heat_map_or_the_servers_answer(
    page: Page, demo_server: ServerProcess, tmp_path: Path, save_screenshot
) -> None:
    image = tmp_path / "star.jpg"
    image.write_bytes(encode(known_image("star", 2)))
    page.locator("#file-input").set_input_files(image)
    card = _card(page, "star.jpg")
    explain = card.get_by_role("button", name="Explain the prediction for star.jpg")
    expect(explain).to_be_enabled(timeout=ANSWER_TIMEOUT_MS)
    explain.click()

    if "/explain" in demo_server.get("/openapi.json").json()["paths"]:
        heat_map = card.locator(".heatmap img")
        expect(heat_map).to_have_js_property("complete", True, timeout=ANSWER_TIMEOUT_MS)
        assert heat_map.evaluate("img => img.naturalWidth") > 0
        top_label = card.locator(".prediction .label").first.inner_text()
        expect(card.locator(".heatmap figcaption")).to_have_text(
            f"Where the model saw “{top_label}”"
        )
    else:
        expect(card.locator(".explain-error")).to_have_text(
            "Explain failed: This server has no /explain route.", timeout=ANSWER_TIMEOUT_MS
        )
    expect(explain).to_have_text("Explain")
    save_screenshot(page, "explained")


@pytest.mark.parametrize(
    ("path", "rendered"), [("/docs", ".swagger-ui .info"), ("/redoc", ".api-info")]
)
def test_docs_render_offline(
    browser: Browser, demo_server: ServerProcess, path: str, rendered: str, save_screenshot
) -> None:
    context = browser.new_context()
    elsewhere: list[str] = []

    def offline(route: Route) -> None:  # as on a machine without internet
        elsewhere.append(route.request.url)
        route.abort()

    context.route(re.compile(rf"^(?!{re.escape(demo_server.url)}/)[a-z]+://"), offline)
    page = context.new_page()
    page.goto(demo_server.url + path)
    expect(page.locator(rendered)).to_contain_text("resnet-serve", timeout=ANSWER_TIMEOUT_MS)
    save_screenshot(page, path.strip("/"))
    context.close()
    assert not elsewhere


def test_a_server_of_several_models_lets_the_page_choose_one(
    browser: Browser, start_server, tmp_path: Path, save_screenshot
) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(DEMO_BUNDLE, repository / "shapes")
    write_bundle(repository / "tiny", ["left", "middle", "right"], input_size=32)
    server: ServerProcess = start_server(model_repository=repository).wait_ready()
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#model-info")).to_contain_text("Model shapes", timeout=ANSWER_TIMEOUT_MS)
    choice = page.get_by_label("Model")
    expect(choice.locator("option")).to_have_text(["shapes", "tiny"])
    choice.select_option("tiny")
    expect(page.locator("#model-info")).to_contain_text("Model tiny: resnet18, 3 classes")

    image = tmp_path / "star.jpg"
    image.write_bytes(encode(known_image("star", 0)))
    page.locator("#file-input").set_input_files(image)
    labels = _card(page, "star.jpg").locator(".prediction .label")
    expect(labels).to_have_count(3, timeout=ANSWER_TIMEOUT_MS)  # tiny's three classes
    assert set(labels.all_inner_texts()) == {"left", "middle", "right"}
    save_screenshot(page, "two-models")
    context.close()


def test_a_photo_of_a_coffee_cup_is_shown_as_none_of_these(page: Page, save_screenshot) -> None:
    page.locator("#file-input").set_input_files(REPO / "examples" / "coffee.jpg")
    card = _card(page, "coffee.jpg")
    expect(card.locator(".abstained")).to_contain_text("None of these", timeout=ANSWER_TIMEOUT_MS)
    expect(card.locator(".prediction .label").first).to_have_text("clutter")  # scores still shown
    expect(page.locator("#status")).to_contain_text("coffee.jpg: none of these")
    save_screenshot(page, "coffee")
