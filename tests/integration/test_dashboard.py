"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright) against a real server.

A new user's path: drop a broken file and read its line errors, drop a good one and see its statistics and
preview, start a job from the form, watch the loss chart fill in without reloading, pause and resume it,
then ask the base and the fine-tuned model the same question in the playground. Screenshots go to
`test-artifacts/screenshots/` for a person to look at.

Chromium comes from Debian (`apt-get install chromium`, done by `make install` where it can). Without it
these tests skip, unless TUNEHOUSE_REQUIRE_BROWSER=1 (set by `.ci/run`), where they fail instead.
"""

from __future__ import annotations

import base64

import pytest

from ..conftest import SHOTS
from .test_auth import create_key
from .test_jobs_api import long_dataset, register_tiny

pytestmark = pytest.mark.integration


BROKEN_JSONL = b'{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [\n'
MISSING_ANSWER = (
    b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    b'{"messages": [{"role": "user", "content": "no answer here"}]}\n'
)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def drop_file(page, name: str, content: bytes) -> None:
    """Drop a file on the drop zone as a person dragging it from their desktop would (once the page that has
    the zone is drawn: a click on the nav draws it a moment later)."""
    page.locator("#dropzone").wait_for()
    page.evaluate(
        """([name, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "application/jsonl" }));
            const zone = document.querySelector("#dropzone");
            for (const type of ["dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [name, base64.b64encode(content).decode()],
    )


def points(page, series: str) -> int:
    found = page.locator(f'path[data-series="{series}"]')
    return int(found.get_attribute("data-points")) if found.count() else 0


def test_upload_train_watch_and_compare_in_the_browser(server_factory, tiny_model_dir, page):
    server = server_factory()
    register_tiny(server, tiny_model_dir)
    page.goto(f"http://127.0.0.1:{server.port}/")
    page.get_by_text("No fine-tuning jobs yet").wait_for()

    # a file that is not JSONL is refused at upload, naming the line
    page.click("nav >> text=Files")
    drop_file(page, "broken.jsonl", BROKEN_JSONL)
    alert = page.locator("#upload-status .alert.error")
    alert.wait_for()
    assert "line 2" in alert.inner_text()

    # valid JSON lines with a schema problem: stored, and the report lists the problem by line
    drop_file(page, "missing-answer.jsonl", MISSING_ANSWER)
    problems = page.locator("#problems tbody tr")
    problems.first.wait_for()
    assert problems.count() == 1
    assert "line 2" in problems.first.inner_text() and "example_missing_assistant_message" in problems.first.inner_text()
    page.screenshot(path=SHOTS / "files-problems.png", full_page=True)

    # a good file: statistics and the rendered preview with the learned tokens marked
    drop_file(page, "numbers.jsonl", long_dataset(120))
    page.locator("#stats").wait_for()
    assert "120" in page.locator("#stats").inner_text()
    assert page.locator(".preview mark").count() >= 1
    page.screenshot(path=SHOTS / "files-report.png", full_page=True)

    # the new job form, from the report's button
    page.click("text=Fine-tune on this file")
    page.locator("#new-job").wait_for()
    page.select_option("#model", "tiny")
    page.fill("input[name=n_epochs]", "8")
    page.fill("input[name=batch_size]", "1")
    page.fill("input[name=suffix]", "numbers")
    page.click("#start")
    page.wait_for_url("**/#/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[1]

    # the chart fills in while the page stays open (no reload): live updates
    page.wait_for_function(
        "document.querySelector('path[data-series=\"training loss (raw)\"]')?.dataset.points > 20", timeout=120_000
    )
    first_seen = points(page, "training loss (raw)")
    page.screenshot(path=SHOTS / "job-training.png", full_page=True)
    page.click("#pause")
    page.locator('.page-head .badge[data-status="paused"]').wait_for(timeout=60_000)
    page.click("#resume")
    page.locator('.page-head .badge[data-status="succeeded"]').wait_for(timeout=300_000)
    assert points(page, "training loss (raw)") == 960 > first_seen  # 120 examples x 8 epochs, batch 1
    assert points(page, "validation loss") == 0  # no validation file
    assert page.locator("#progress").inner_text().count("100%") == 1
    assert page.locator("tbody tr", has_text="ckpt-step-").count() == 3
    events = page.locator("#events").inner_text()
    assert "The job has successfully completed" in events and "paused" in events.lower()
    page.screenshot(path=SHOTS / "job-succeeded.png", full_page=True)

    # the playground: the base default model beside the fine-tuned tiny one, both streamed
    client = server.client()
    fine_tuned = client.fine_tuning.jobs.retrieve(job_id).fine_tuned_model
    page.click("text=Compare in playground")
    page.locator("#playground").wait_for()
    assert page.locator("#right-model").input_value() == fine_tuned
    page.select_option("#left-model", "smollm2-135m-instruct")
    page.fill("#system", "Answer with the city only.")
    page.fill("#prompt", "What is the capital of France?")
    page.fill("#max-tokens", "12")
    page.click("#send")
    for side in ("left", "right"):
        page.wait_for_function(f"document.querySelector('#{side}-meta').textContent.includes('tokens/s')", timeout=120_000)
    assert "Paris" in page.locator("#left-answer").inner_text()
    assert "tokens" in page.locator("#right-meta").inner_text()
    page.screenshot(path=SHOTS / "playground.png", full_page=True)


def test_a_key_entered_once_shows_only_that_projects_objects(server_factory, page):
    server = server_factory()
    alpha, beta = create_key(server.data_dir, "alpha"), create_key(server.data_dir, "beta")
    server.client(api_key=alpha).files.create(file=("alpha-data.jsonl", long_dataset(3)), purpose="fine-tune")

    page.goto(f"http://127.0.0.1:{server.port}/#/files")
    page.locator("#key-dialog[open]").wait_for()  # the server answered 401: the page asks for a key
    page.fill("#key-input", beta)
    page.click("#key-save")
    page.get_by_text("No datasets uploaded yet.").wait_for()

    page.click("#key-button")
    page.fill("#key-input", alpha)
    page.click("#key-save")
    page.get_by_text("alpha-data.jsonl").wait_for()
    assert page.evaluate("localStorage.getItem('tunehouse.key')") == alpha
    page.reload()  # entered once: kept in this browser
    page.get_by_text("alpha-data.jsonl").wait_for()
    assert page.locator("#key-dialog[open]").count() == 0
    page.screenshot(path=SHOTS / "files-with-key.png", full_page=True)
