"""`make run` without Slack, in a real browser: the local workspace's page with the real bot behind it.

A new user's path: the page opens on #fine-tuning with the bot online; a mention and a slash command get
their answers (the command's "only visible to you"); a CSV dropped in through the paperclip needs its
columns mapped in a modal (static selects, an inline error from `response_action: errors`); a JSONL
dropped on the page gets its report in the thread, the Fine-tune button asks for confirmation, the
Options modal refuses a bad epoch count inline and then starts a four-epoch job whose status message
updates live until it succeeds with the loss chart shown as an image. Then Ctrl+C and `make run` again:
the history is still there. Block Kit and mrkdwn are checked on a message the bot's token posts.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib

import pytest

from ..conftest import SHOTS

pytestmark = pytest.mark.integration

JOB_TIMEOUT_MS = 400_000
NUMBERS = b"\n".join(
    json.dumps({"messages": [{"role": "system", "content": "Answer with the number only."},
                             {"role": "user", "content": f"Say {i}."},
                             {"role": "assistant", "content": f"{i}"}]}).encode()
    for i in range(10)
)
UNMAPPED_CSV = b"frage,antwort\nWie viel ist 1+1?,2\nWie viel ist 2+2?,4\nWie viel ist 3+3?,6\n"


def drop_file(page, selector: str, name: str, content: bytes, mimetype: str = "application/octet-stream") -> None:
    """Drag a file from the desktop and drop it on `selector` (once drawn), as a person does."""
    page.locator(selector).wait_for()
    page.evaluate(
        """([selector, name, data, type]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type }));
            const target = document.querySelector(selector);
            for (const kind of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [selector, name, base64.b64encode(content).decode(), mimetype],
    )


def message_with_file(page, name: str):
    return page.locator("#messages .msg", has=page.locator(f".file-chip[download='{name}']")).last


def png(width: int = 120, height: int = 60) -> bytes:
    """A small valid PNG (a blue gradient), made without any imaging library."""
    rows = b"".join(b"\x00" + bytes(c for x in range(width) for c in (20, 100 + x % 100, 200)) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_the_page_opens_on_fine_tuning_with_the_bot_online(page, product):
    assert product.url.startswith("http://127.0.0.1:")
    assert page.locator("#conv-title").inner_text().replace("\n", "") == "#fine-tuning"
    channels = page.locator("#channels").inner_text()
    assert "fine-tuning" in channels and "general" in channels
    assert page.locator("#dms .presence.online").count() == 1, "the bot's DM shows it connected"
    assert page.locator("#banner").is_hidden()
    assert "tunehouse" in page.locator("#conv-members").get_attribute("title")
    # the DM with the bot, and its App Home tab (app_home_opened → views.publish)
    page.click("#apps a")
    page.locator("#home .blocks").wait_for()
    assert page.locator("#tabs .tab.active").inner_text() == "Home"
    page.screenshot(path=SHOTS / "workspace-app-home.png")
    page.click("#tabs [data-tab=messages]")
    page.locator("#messages .intro").wait_for()
    assert "direct message" in page.locator("#messages .intro").inner_text()


def test_block_kit_and_mrkdwn_as_slack_shows_them(page, product):
    channel = product.channel_id("fine-tuning")
    shared = product.local("POST", "files", json={"channel": "fine-tuning", "user": "alice", "filename": "pic.png",
                                                  "content_base64": base64.b64encode(png()).decode()})
    picture = f"{product.url}/_local/files/{shared['file_id']}/content"

    def text(kind: str, value: str) -> dict:
        return {"type": kind, "text": value}

    def button(label: str, action_id: str, **more) -> dict:
        return {"type": "button", "text": text("plain_text", label), "action_id": action_id, **more}

    confirm = {"title": text("plain_text", "Really?"), "text": text("mrkdwn", "This is *final*."),
               "confirm": text("plain_text", "Do it"), "deny": text("plain_text", "Keep it")}
    formatted = ("*bold* _italic_ ~strike~ `code` <https://example.com/x?a=1&amp;b=2|a link> <@U0ALICE01> "
                 "&amp; &lt;tag&gt;\n```line 1\nline 2```")
    blocks = [
        {"type": "header", "text": text("plain_text", "A header")},
        {"type": "section", "text": text("mrkdwn", formatted), "accessory": button("Accessory", "t_accessory")},
        {"type": "section", "fields": [text("mrkdwn", "*Field one*\n1"), text("mrkdwn", "*Field two*\n2")]},
        {"type": "divider"},
        {"type": "context", "elements": [text("mrkdwn", "context :white_check_mark:")]},
        {"type": "image", "image_url": picture, "alt_text": "a gradient", "title": text("plain_text", "An image")},
        {"type": "actions", "elements": [button("Primary", "t_primary", style="primary", confirm=confirm),
                                         button("Danger", "t_danger", style="danger")]},
    ]
    answer = product.web_api("chat.postMessage", channel=channel, text="Block Kit", blocks=blocks)
    assert answer["ok"], answer
    message = page.locator(f"#messages .msg[data-ts='{answer['ts']}']")
    message.wait_for()
    assert message.locator(".block-header").inner_text() == "A header"
    section = message.locator("[data-block-type=section]").first
    assert section.locator("b").first.inner_text() == "bold"
    assert section.locator("i").first.inner_text() == "italic"
    assert section.locator("s").first.inner_text() == "strike"
    assert section.locator("code").first.inner_text() == "code"
    link = section.locator("a[href^='https://example.com']")
    assert link.inner_text() == "a link" and link.get_attribute("href") == "https://example.com/x?a=1&b=2"
    assert section.locator(".mention").inner_text() == "@alice"
    assert "& <tag>" in section.inner_text()
    assert section.locator("pre").inner_text() == "line 1\nline 2"
    assert section.locator("button[data-action-id=t_accessory]").count() == 1
    assert message.locator(".fields > div").count() == 2
    assert message.locator("hr.block-divider").count() == 1
    assert "context ✅" in message.locator(".block-context").inner_text()
    image = message.locator("figure.block-image img")
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 120", arg=image.element_handle())
    assert message.locator("figure.block-image figcaption").inner_text() == "An image"
    assert "primary" in message.locator("[data-action-id=t_primary]").get_attribute("class")
    assert "danger" in message.locator("[data-action-id=t_danger]").get_attribute("class")
    # a button with `confirm` asks first; "Keep it" sends nothing
    def clicks() -> int:  # the app's own post comes back to it as a `message` event, maybe only now
        return len([d for d in product.local("GET", "deliveries")["deliveries"] if d["kind"] == "interactive"])

    deliveries = clicks()
    message.locator("[data-action-id=t_primary]").click()
    dialog = page.locator(".modal.confirm")
    dialog.wait_for()
    assert "Really?" in dialog.inner_text() and "final" in dialog.locator("b").inner_text()
    page.screenshot(path=SHOTS / "workspace-block-kit.png")
    dialog.locator(".deny").click()
    dialog.wait_for(state="detached")
    time.sleep(0.5)
    assert clicks() == deliveries
    # a person's shared image shows inline
    shared_image = page.locator(f"#messages .msg[data-ts='{shared['ts']}'] .file-image img")
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 120", arg=shared_image.element_handle())


def test_a_mention_and_a_slash_command(page):
    composer = page.locator("#main-composer textarea")
    composer.type("@tuneh")
    page.locator("#main-composer .popup .option").first.wait_for()
    composer.press("Tab")
    composer.type("what can you do?")
    assert composer.input_value() == "@tunehouse what can you do?"
    composer.press("Enter")
    mine = page.locator("#messages .msg", has=page.locator(".mention", has_text="@tunehouse")).last
    mine.wait_for()
    mine.locator(".replies-bar").wait_for()  # the bot answers a mention in its thread

    composer.type("/fine")
    page.locator("#main-composer .popup", has_text="/finetune").wait_for()
    composer.press("Tab")
    composer.type("help")
    composer.press("Enter")
    ephemeral = page.locator("#messages .msg.ephemeral", has_text="/finetune list").last
    ephemeral.wait_for()
    assert "Only visible to you" in ephemeral.inner_text()
    page.screenshot(path=SHOTS / "workspace-slash-command.png")
    ephemeral.locator(".ephemeral-note button").click()
    ephemeral.wait_for(state="detached")


def test_a_table_shared_with_the_paperclip_is_mapped_in_a_modal(page):
    page.locator("#main-composer input[type=file]").set_input_files(
        files=[{"name": "fragen.csv", "mimeType": "text/csv", "buffer": UNMAPPED_CSV}])
    page.locator("#main-composer [data-staged='fragen.csv']").wait_for()
    page.locator("#main-composer textarea").press("Enter")
    shared = message_with_file(page, "fragen.csv")
    shared.locator(".replies-bar").wait_for()
    shared.locator(".replies-bar").click()
    page.locator("#thread-messages [data-action-id=dataset_map_columns]").click()
    modal = page.locator(".modal[data-callback-id=map_columns]")
    modal.wait_for()
    modal.locator("[id='prompt::value']").select_option("frage")
    modal.locator("[id='completion::value']").select_option("frage")
    modal.locator(".modal-submit").click()
    error = modal.locator(".input-error[data-error-for=completion]")
    error.wait_for()
    assert "other than the prompt" in error.inner_text()
    page.screenshot(path=SHOTS / "workspace-modal-error.png")
    modal.locator("[id='completion::value']").select_option("antwort")
    modal.locator(".modal-submit").click()
    modal.wait_for(state="detached")
    page.locator("#thread-messages .msg[data-bot]", has_text="3 examples").wait_for()
    page.click("#thread-close")


def test_drop_a_dataset_train_it_and_watch_it_live(page, product):
    drop_file(page, "#messages", "numbers.jsonl", NUMBERS, "application/jsonl")
    page.locator("#main-composer [data-staged='numbers.jsonl']").wait_for()
    page.locator("#main-composer textarea").press("Enter")
    shared = message_with_file(page, "numbers.jsonl")
    shared.locator(".replies-bar").wait_for()
    shared.locator(".replies-bar").click()
    thread = page.locator("#thread-messages")
    report = thread.locator(".msg[data-bot]", has=page.locator("[data-action-id=dataset_finetune]"))
    report.wait_for()
    assert "10 examples" in report.inner_text() and "Tokens per example" in report.inner_text()
    page.screenshot(path=SHOTS / "workspace-report.png")

    # Fine-tune asks first (its confirm dialog); "Not now" starts nothing
    report.locator("[data-action-id=dataset_finetune]").click()
    dialog = page.locator(".modal.confirm")
    dialog.wait_for()
    assert "Start fine-tuning?" in dialog.inner_text()
    dialog.locator(".deny").click()

    # Options…: a bad epoch count is refused under its input, then a four-epoch job starts (40 steps: long
    # enough for the status message to be seen between its first state and its last, updated every 3 s)
    report.locator("[data-action-id=dataset_options]").click()
    modal = page.locator(".modal[data-callback-id]")
    modal.wait_for()
    modal.locator("[id='n_epochs::value']").fill("lots")
    modal.locator(".modal-submit").click()
    modal.locator(".input-error[data-error-for=n_epochs]").wait_for()
    assert "whole number" in modal.locator(".input-error[data-error-for=n_epochs]").inner_text()
    modal.locator("[id='n_epochs::value']").fill("4")
    modal.locator(".modal-submit").click()
    modal.wait_for(state="detached")

    # the status message is edited in place (chat.update → message_changed), pushed to the page
    status = thread.locator(".msg[data-bot]", has=page.locator("[data-action-id=job_cancel]"))
    status.wait_for(timeout=60_000)
    status_ts = status.get_attribute("data-ts")
    seen = {status.inner_text()}
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    shot_taken = False
    while time.monotonic() < deadline:
        current = thread.locator(f".msg[data-ts='{status_ts}']")
        text = current.inner_text() if current.count() else ""
        seen.add(text)
        if not shot_taken and "step" in text:
            page.screenshot(path=SHOTS / "workspace-training.png")
            shot_taken = True
        if "Succeeded" in text:
            break
        time.sleep(0.5)
    assert any("Succeeded" in s for s in seen), f"the job did not succeed; the status said: {seen}"
    assert len(seen) >= 3, f"the status message did not update live: {seen}"
    chart = thread.locator(".file-image img").last
    chart.wait_for(timeout=60_000)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 200", arg=chart.element_handle())
    assert page.locator("#messages .msg[data-bot]", has_text="Fine-tuning succeeded").count() >= 1, "the end is broadcast"
    page.screenshot(path=SHOTS / "workspace-succeeded.png")


def test_ctrl_c_then_make_run_again_keeps_the_history(product, browser):
    assert product.stop() == 0
    assert "Stopped." in product.output
    product.start()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(product.url)
    message_with_file(page, "numbers.jsonl").wait_for(timeout=30_000)
    assert page.locator("#messages .msg[data-bot]", has_text="Fine-tuning succeeded").count() >= 1
    assert page.locator("#dms .presence.online").count() == 1
    page.screenshot(path=SHOTS / "workspace-after-restart.png")
    context.close()
