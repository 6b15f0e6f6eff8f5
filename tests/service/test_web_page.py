"""The enrollment web page (``GET /``) in a real browser against a real ``kospeech-serve`` process on loopback.

Chromium (Debian's package, driven by Playwright) gets a fake microphone that plays a built-in user's recording, so
the recording path (getUserMedia, MediaRecorder, WebM/Opus decoded by the server's PyAV) runs for real. Enrollment by
file upload reads each prompt the page shows in built-in user01's synthetic voice. Without Chromium the browser tests
skip, saying so; ``.ci/run`` installs it and sets ``KOSPEECH_REQUIRE_BROWSER=1``, under which they fail instead.
"""

import dataclasses
import io
import os
import shutil
from typing import Iterator, Tuple

import httpx
import pytest
import soundfile as sf
from conftest import BASE_MODEL
from playwright.sync_api import expect, sync_playwright
from service_processes import Server, create_key

from kospeech.data.manifest import read_manifest
from kospeech.data.synthetic.corpus import SAMPLE_RATE, plan_corpus, render_utterance

MAX_AUDIO_SECONDS = 8.0
RECORDING_MARGIN_SECONDS = 0.5  # enroll.js stops this much before the server's limit
MIN_ENROLLMENT = 5
WAIT_MS = 60_000


def chromium_path() -> str:
    """Debian's Chromium, or a skip (a failure under ``KOSPEECH_REQUIRE_BROWSER=1``)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (Debian package chromium); .ci/run installs it"
        if os.environ.get("KOSPEECH_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def page_server(tmp_path_factory) -> Iterator[Tuple[Server, str]]:
    """A ``kospeech-serve`` process with its in-process worker (1 epoch per job) and a key of tenant ``acme``."""
    folder = tmp_path_factory.mktemp("web")
    common = [f"server.data_dir={folder / 'data'}", f"server.base_model_path={BASE_MODEL}"]
    key = create_key(common, "acme", cwd=folder)
    server = Server(
        [
            *common,
            "server.in_process_worker=true",
            "server.train_num_epochs=1",
            f"server.max_audio_seconds={MAX_AUDIO_SECONDS}",
            f"server.min_enrollment_utterances={MIN_ENROLLMENT}",
            "server.batch_max_wait_ms=5",
        ],
        folder / "server.log",
        folder,
    )
    try:
        yield server, key
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(demo_user01):
    """Chromium whose microphone plays one of user01's test recordings, in a loop."""
    executable = chromium_path()
    expect.set_options(timeout=WAIT_MS)
    microphone = read_manifest(demo_user01["test"])[0].audio_path
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, page_server):
    # The page's Content-Security-Policy forbids eval, so the tests wait with locators, never wait_for_function.
    """A fresh browser context (no storage) in English, with the microphone allowed for the server's origin."""
    server, _ = page_server
    context = browser.new_context(locale="en-US")
    context.grant_permissions(["microphone"], origin=server.url)
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"the page raised: {errors}"


def spoken_by_user01(text: str, index: int) -> bytes:
    """``text`` read in built-in user01's voice and channel (the demo corpus's), as WAV bytes."""
    plan = plan_corpus("demo", seed=0)
    voice = next(utterance for utterance in plan.utterances if utterance.group.endswith("/user01"))
    utterance = dataclasses.replace(voice, text=text, seed=voice.seed + index + 1)
    buffer = io.BytesIO()
    sf.write(buffer, render_utterance(utterance), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def sign_in(page, server: Server, key: str, user_id: str) -> None:
    """Open the page with the key in the link's fragment and start as ``user_id``."""
    page.goto(f"{server.url}/#key={key}")
    page.fill("#user-id", user_id)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#workspace:not([hidden])")
    expect(page.locator("#prompt")).not_to_be_empty()


@pytest.mark.slow
def test_enroll_by_upload_train_try_and_delete_in_a_browser(page, page_server, demo_user01, tmp_path):
    server, key = page_server
    sign_in(page, server, key, "webuser")
    assert key not in page.url, "the key stays out of the address bar and history"
    assert page.evaluate("sessionStorage.getItem('kospeech.key')") == key
    assert page.is_disabled("#train")

    read = []
    for index in range(MIN_ENROLLMENT):
        prompt = page.text_content("#prompt")
        recording = tmp_path / f"prompt{index}.wav"
        recording.write_bytes(spoken_by_user01(prompt, index))
        page.set_input_files("#prompt-file", str(recording))
        expect(page.locator("#utterances tbody tr")).to_have_count(index + 1)
        expect(page.locator("#prompt")).not_to_have_text(prompt)
        read.append(prompt)

    rows = page.locator("#utterances tbody tr td:first-child").all_text_contents()
    assert rows == read
    assert page.text_content("#summary-utterances") == str(MIN_ENROLLMENT)
    with server.client(key) as client:
        listed = client.get("/v1/users/webuser/utterances").json()["utterances"]
    assert [utterance["text"] for utterance in listed] == read

    # One recording deleted through its row's button, then one more sentence to get back to the minimum.
    page.click(f"#utterances tbody tr:nth-child(2) button[aria-label='Delete the recording of: {read[1]}']")
    expect(page.locator("#utterances tbody tr")).to_have_count(MIN_ENROLLMENT - 1)
    assert page.is_disabled("#train")
    prompt = page.text_content("#prompt")
    recording = tmp_path / "extra.wav"
    recording.write_bytes(spoken_by_user01(prompt, MIN_ENROLLMENT))
    page.set_input_files("#prompt-file", str(recording))
    expect(page.locator("#utterances tbody tr")).to_have_count(MIN_ENROLLMENT)

    page.select_option("#adapter-type", "head")
    page.click("#train")
    page.wait_for_selector("#job-status[data-outcome]", timeout=600_000)
    outcome = page.get_attribute("#job-status", "data-outcome")
    with server.client(key) as client:
        record = client.get("/v1/users/webuser").json()
    job = record["jobs"][-1]
    assert job["status"] == "succeeded" and outcome == ("activated" if job["result"]["activated"] else "kept")
    assert page.evaluate("document.querySelector('#job-progress').value") == 1
    assert record["adapter"]["adapter_type"] == "head" and record["adapter"]["version"] == 1
    assert "version 1 (head)" in page.text_content("#summary-adapter")
    assert page.is_enabled("#train")

    # Trying a test recording shows what the API answers for it, with and without the user.
    test_file = read_manifest(demo_user01["test"])[1].audio_path
    page.set_input_files("#try-file", str(test_file))
    page.wait_for_selector("#try-result:not([hidden])")
    with server.client(key) as client:
        upload = {"file": (test_file.name, test_file.read_bytes())}
        personal = client.post("/v1/audio/transcriptions", files=upload, data={"user": "webuser"}).json()["text"]
        base = client.post("/v1/audio/transcriptions", files=upload).json()["text"]
    assert page.text_content("#try-base") == (base or "(nothing recognized)")
    shown = page.text_content("#try-personal")
    if record["adapter"]["active"]:
        assert shown.startswith(personal) and "version 1" in shown
    else:
        assert shown.startswith(base) and "no personal model" in shown

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-user")
    page.wait_for_selector("#sign-in:not([hidden])")
    assert "deleted" in page.text_content("#status")
    assert page.evaluate("sessionStorage.getItem('kospeech.key')") is None
    with server.client(key) as client:
        assert client.get("/v1/users/webuser").status_code == 404


@pytest.mark.slow
def test_microphone_takes_are_kept_discarded_and_stopped_at_the_limit(page, page_server):
    server, key = page_server
    sign_in(page, server, key, "micuser")
    for idle in ("#meter", "#take", "#stop", "#try-result", "#job"):
        expect(page.locator(idle)).to_be_hidden()

    page.click("#record")
    page.wait_for_selector("#stop:not([hidden])")
    expect(page.locator("#meter")).to_be_visible()
    page.wait_for_timeout(1500)
    page.click("#stop")
    page.wait_for_selector("#take:not([hidden])")
    expect(page.locator("#meter")).to_be_hidden()
    assert page.evaluate("document.querySelector('#take-audio').src").startswith("blob:")
    page.click("#discard")
    assert page.is_hidden("#take")

    # A take nobody stops ends at the server's limit less the margin, and the server measures that length.
    page.click("#record")
    page.wait_for_selector("#take:not([hidden])", timeout=int(MAX_AUDIO_SECONDS * 1000) + WAIT_MS)
    assert "limit" in page.text_content("#status")
    prompt = page.text_content("#prompt")
    page.click("#keep")
    expect(page.locator("#utterances tbody tr")).to_have_count(1)
    with server.client(key) as client:
        (utterance,) = client.get("/v1/users/micuser/utterances").json()["utterances"]
    assert utterance["text"] == prompt
    assert MAX_AUDIO_SECONDS - RECORDING_MARGIN_SECONDS - 1.0 < utterance["duration"] <= MAX_AUDIO_SECONDS
    assert page.text_content("#utterances tbody td:nth-child(2)") == f"{utterance['duration']:.1f}"

    # Trying the microphone before any adapter: both rows show the base model's answer.
    page.click("#try-record")
    page.wait_for_selector("#try-stop:not([hidden])")
    page.wait_for_timeout(2000)
    page.click("#try-stop")
    page.wait_for_selector("#try-result:not([hidden])")
    assert "no personal model" in page.text_content("#try-personal")
    assert page.text_content("#try-personal").startswith(page.text_content("#try-base"))


def test_a_refused_key_is_shown_and_nothing_is_kept(page, page_server):
    server, _ = page_server
    page.goto(server.url)
    page.fill("#key", "ksk_000000000000_" + "0" * 43)
    page.fill("#user-id", "someone")
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "did not accept this key" in page.text_content("#error")
    assert page.is_hidden("#workspace")
    assert page.evaluate("sessionStorage.getItem('kospeech.key')") is None


def test_an_existing_user_goes_on_and_a_reload_keeps_the_session(page, page_server):
    server, key = page_server
    with server.client(key) as client:
        assert client.post("/v1/users", json={"user_id": "returning"}).status_code == 201
    page.goto(f"{server.url}/#key={key}&user=returning")
    assert page.input_value("#user-id") == "returning"
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#workspace:not([hidden])")
    assert page.text_content("#who-user") == "returning" and key not in page.url
    page.reload()
    page.wait_for_selector("#workspace:not([hidden])")
    assert page.text_content("#who-user") == "returning"
    page.click("#sign-out")
    assert page.is_visible("#sign-in") and page.evaluate("sessionStorage.getItem('kospeech.key')") is None


def test_a_korean_browser_gets_the_korean_page(browser, page_server):
    server, _ = page_server
    context = browser.new_context(locale="ko-KR")
    try:
        page = context.new_page()
        page.goto(server.url)
        assert page.text_content("h1") == "음성 등록"
        assert page.evaluate("document.documentElement.lang") == "ko"
        page.select_option("#language", "en")
        assert page.text_content("h1") == "Voice enrollment"
    finally:
        context.close()


def test_the_page_and_its_files_carry_their_security_headers(page_server):
    server, _ = page_server
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert '"max_audio_seconds": 8.0' in page.text and '"min_enrollment_utterances": 5' in page.text
    script = httpx.get(f"{server.url}/static/enroll.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    again = httpx.get(f"{server.url}/static/enroll.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    missing = httpx.get(f"{server.url}/static/secrets.txt")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{server.url}/static/..%2Fapp.py").status_code == 404


def test_the_page_is_not_part_of_the_api_schema(page_server):
    server, _ = page_server
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)
