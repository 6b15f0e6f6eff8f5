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
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, Tuple

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import BASE_MODEL
from playwright.sync_api import expect, sync_playwright
from service_processes import Server, create_key, upload_utterances

from kospeech.data.manifest import read_manifest
from kospeech.data.synthetic.corpus import SAMPLE_RATE, plan_corpus, render_utterance

MAX_AUDIO_SECONDS = 8.0
RECORDING_MARGIN_SECONDS = 1.0  # enroll.js stops this much before the server's limit
MIN_ENROLLMENT = 5
MAX_UPLOAD_BYTES = 1_000_000
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


SCOPED_USER = "selfenrolled"


class _BlankPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def other_site() -> Iterator[int]:
    """The port of a blank page on loopback: ``http://localhost:<port>`` and ``http://127.0.0.1:<port>`` are two
    origins other than the service's, the first of which ``page_server`` lets call its API."""
    site = ThreadingHTTPServer(("127.0.0.1", 0), _BlankPage)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield site.server_address[1]
    finally:
        site.shutdown()
        site.server_close()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory, other_site) -> Iterator[Tuple[Server, str]]:
    """A ``kospeech-serve`` process with its in-process worker (1 epoch per job) and a key of tenant ``acme``; the
    server's ``scoped_key`` acts as user ``selfenrolled`` only, and pages of ``http://localhost:<other_site>`` may call
    its API."""
    folder = tmp_path_factory.mktemp("web")
    common = [f"server.data_dir={folder / 'data'}", f"server.base_model_path={BASE_MODEL}"]
    key = create_key(common, "acme", folder)
    scoped_key = create_key(common, "acme", folder, "--user", SCOPED_USER)
    server = Server(
        [
            *common,
            "server.in_process_worker=true",
            "server.train_num_epochs=1",
            f"server.max_audio_seconds={MAX_AUDIO_SECONDS}",
            f"server.min_enrollment_utterances={MIN_ENROLLMENT}",
            f"server.max_upload_bytes={MAX_UPLOAD_BYTES}",
            "server.batch_max_wait_ms=5",
            f"server.cors_allow_origins=[http://localhost:{other_site}]",
        ],
        folder / "server.log",
        folder,
    )
    server.scoped_key = scoped_key
    try:
        yield server, key
    finally:
        server.stop()


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory) -> Iterator[Tuple[Server, str]]:
    """A ``kospeech-serve`` process without a worker (its training jobs stay queued) and a key of tenant ``acme``."""
    folder = tmp_path_factory.mktemp("idle")
    common = [f"server.data_dir={folder / 'data'}", f"server.base_model_path={BASE_MODEL}"]
    key = create_key(common, "acme", cwd=folder)
    server = Server([*common, "server.in_process_worker=false"], folder / "server.log", folder)
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
    """A fresh browser context (no storage) in English, with the microphone allowed for the server's origin.

    The page's Content-Security-Policy forbids eval, so the tests wait with locators, never ``wait_for_function``.
    An uncaught exception or a refused resource (a CSP violation) in the page fails the test.
    """
    server, _ = page_server
    context = browser.new_context(locale="en-US")
    context.grant_permissions(["microphone"], origin=server.url)
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console", lambda message: message.type == "error" and "Refused" in message.text and errors.append(message.text)
    )
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


def key_stored(page, key: str) -> bool:
    """Whether ``key`` is anywhere the browser keeps across a reload (history entry, session or local storage)."""
    kept = page.evaluate("JSON.stringify([history.state, {...sessionStorage}, {...localStorage}])")
    return key in kept or key in page.url


def rows(page):
    return page.locator("#utterances tbody tr")


@pytest.mark.slow
def test_enroll_by_upload_train_try_and_delete(page, page_server, demo_user01, tmp_path):
    server, key = page_server
    sign_in(page, server, key, "webuser")
    assert not key_stored(page, key), "the key stays in the page's memory only"
    expect(page.locator("#train")).to_be_disabled()
    expect(page.locator("#record")).to_be_focused()

    read = []
    for index in range(MIN_ENROLLMENT):
        prompt = page.text_content("#prompt")
        assert page.text_content("#prompt-count") == f"Sentence {index + 1}"
        recording = tmp_path / f"prompt{index}.wav"
        recording.write_bytes(spoken_by_user01(prompt, index))
        page.set_input_files("#prompt-file", str(recording))
        expect(rows(page)).to_have_count(index + 1)
        expect(page.locator("#prompt")).not_to_have_text(prompt)
        read.append(prompt)

    assert rows(page).locator("td:first-child").all_text_contents() == read
    assert page.text_content("#summary-utterances") == str(MIN_ENROLLMENT)
    with server.client(key) as client:
        listed = client.get("/v1/users/webuser/utterances").json()["utterances"]
    assert [utterance["text"] for utterance in listed] == read

    # One recording deleted through its row's button, then one more sentence to get back to the minimum.
    page.click(f"#utterances button[aria-label='Delete the recording of: {read[1]}']")
    expect(rows(page)).to_have_count(MIN_ENROLLMENT - 1)
    expect(page.locator("#train")).to_be_disabled()
    prompt = page.text_content("#prompt")
    recording = tmp_path / "extra.wav"
    recording.write_bytes(spoken_by_user01(prompt, MIN_ENROLLMENT))
    page.set_input_files("#prompt-file", str(recording))
    expect(rows(page)).to_have_count(MIN_ENROLLMENT)
    expect(page.locator("#train")).to_be_enabled()

    page.select_option("#adapter-type", "head")
    page.click("#train")
    expect(page.locator("#job")).to_be_visible()
    expect(page.locator("#adapter-type")).to_be_focused()
    page.wait_for_selector("#job-status[data-outcome]", timeout=600_000)
    outcome = page.get_attribute("#job-status", "data-outcome")
    with server.client(key) as client:
        record = client.get("/v1/users/webuser").json()
    (job,) = record["jobs"]
    assert job["status"] == "succeeded" and outcome == ("activated" if job["result"]["activated"] else "kept")
    assert page.evaluate("document.querySelector('#job-progress').value") == 1
    assert record["adapter"]["adapter_type"] == "head" and record["adapter"]["version"] == 1
    expect(page.locator("#summary-adapter")).to_contain_text("version 1 (head)")
    expect(page.locator("#train")).to_be_enabled()

    # Trying a test recording shows what the API answers for it, with and without the user.
    test_file = read_manifest(demo_user01["test"])[1].audio_path
    page.set_input_files("#try-file", str(test_file))
    expect(page.locator("#try-result")).to_be_visible()
    with server.client(key) as client:
        upload = {"file": (test_file.name, test_file.read_bytes())}
        personal = client.post("/v1/audio/transcriptions", files=upload, data={"user": "webuser"}).json()["text"]
        base = client.post("/v1/audio/transcriptions", files=upload).json()["text"]
    assert page.text_content("#try-base") == (base or "(nothing recognized)")
    if record["adapter"]["active"]:
        expected = f"{personal or '(nothing recognized)'}  (personal model, version 1)"
    else:
        expected = f"{base or '(nothing recognized)'}  (no personal model in use: this is the shared model)"
    assert page.text_content("#try-personal") == expected

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-user")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("deleted")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#key")).to_be_focused()
    expect(page.locator("#key")).to_be_empty()
    with server.client(key) as client:
        assert client.get("/v1/users/webuser").status_code == 404


def test_recordings_the_server_refuses_show_why_and_stay_unsent_when_too_large(page, page_server, tmp_path):
    server, key = page_server
    sign_in(page, server, key, "refused")
    prompt = page.text_content("#prompt")
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(SAMPLE_RATE * 2, dtype=np.float32), SAMPLE_RATE)
    page.set_input_files("#prompt-file", str(silence))
    expect(page.locator("#error")).to_contain_text("no speech found")
    expect(page.locator("#prompt")).to_have_text(prompt)
    expect(rows(page)).to_have_count(0)
    expect(page.locator("#status")).to_be_empty()

    sent = []
    page.on("request", lambda request: request.method == "POST" and sent.append(request.url))
    too_large = tmp_path / "large.wav"
    sf.write(too_large, np.zeros(MAX_UPLOAD_BYTES // 2 + SAMPLE_RATE, dtype=np.int16), SAMPLE_RATE, subtype="PCM_16")
    assert too_large.stat().st_size > MAX_UPLOAD_BYTES
    page.set_input_files("#prompt-file", str(too_large))
    expect(page.locator("#error")).to_contain_text("larger than the server's limit of 1.0 MiB")
    assert sent == []


@pytest.mark.slow
def test_microphone_takes_focus_limits_and_a_clean_sign_out(page, page_server):
    server, key = page_server
    sign_in(page, server, key, "micuser")
    for idle in ("#meter", "#take", "#stop", "#try-result", "#job"):
        expect(page.locator(idle)).to_be_hidden()

    # A double click starts one recording, which its Stop ends.
    page.dblclick("#record")
    expect(page.locator("#stop")).to_be_focused()
    expect(page.locator("#meter")).to_be_visible()
    for locked in ("#try-record", "#skip", "#prompt-file", "#try-file", "#delete-user"):
        expect(page.locator(locked)).to_be_disabled()
    page.wait_for_timeout(1500)
    page.click("#stop")
    expect(page.locator("#take")).to_be_visible()
    expect(page.locator("#keep")).to_be_focused()
    expect(page.locator("#meter")).to_be_hidden()
    expect(page.locator("#stop")).to_be_hidden()
    assert page.evaluate("document.querySelector('#take-audio').src").startswith("blob:")
    # While a try-it recording runs, the take waiting for review can be neither kept nor discarded.
    page.click("#try-record")
    for locked in ("#keep", "#discard"):
        expect(page.locator(locked)).to_be_disabled()
    page.wait_for_timeout(1000)  # stopped at once, Chromium 156 writes a WebM header and no audio (test_api.py)
    page.click("#try-stop")
    expect(page.locator("#try-result")).to_be_visible()
    expect(page.locator("#keep")).to_be_enabled()
    page.click("#discard")
    expect(page.locator("#take")).to_be_hidden()

    # A take left waiting goes when the sentence changes: it can never be kept under another sentence.
    page.click("#record")
    page.wait_for_timeout(500)
    page.click("#stop")
    expect(page.locator("#take")).to_be_visible()
    shown = page.text_content("#prompt")
    page.click("#skip")
    expect(page.locator("#prompt")).not_to_have_text(shown)
    expect(page.locator("#take")).to_be_hidden()

    # A take nobody stops ends at the server's limit less the margin, and the server measures that length; it is
    # kept with the sentence shown when it started.
    prompt = page.text_content("#prompt")
    page.click("#record")
    expect(page.locator("#take")).to_be_visible(timeout=int(MAX_AUDIO_SECONDS * 1000) + WAIT_MS)
    expect(page.locator("#status")).to_contain_text("limit")
    page.click("#keep")
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#record")).to_be_focused()
    with server.client(key) as client:
        (utterance,) = client.get("/v1/users/micuser/utterances").json()["utterances"]
    assert utterance["text"] == prompt
    assert MAX_AUDIO_SECONDS - RECORDING_MARGIN_SECONDS - 1.0 < utterance["duration"] <= MAX_AUDIO_SECONDS
    assert page.text_content("#utterances tbody td:nth-child(2)") == f"{utterance['duration']:.1f}"

    # Trying the microphone: the page shows the server's answers to the two requests it sent for the recording
    # (Playwright cannot read a blob request body, so the answers are taken from the responses).
    answers = []
    page.on("response", lambda response: response.url.endswith("/v1/audio/transcriptions") and answers.append(response))
    page.click("#try-record")
    expect(page.locator("#try-result")).to_be_hidden()  # the first try's result goes as the second starts
    page.wait_for_timeout(2000)
    page.click("#try-stop")
    expect(page.locator("#try-result")).to_be_visible()
    expect(page.locator("#try-record")).to_be_focused()
    texts = {answer.json()["text"] for answer in answers}
    assert len(answers) == 2 and len(texts) == 1, "with and without a user that has no adapter: one answer"
    (text,) = texts
    assert page.text_content("#try-base") == (text or "(nothing recognized)")
    assert (
        page.text_content("#try-personal")
        == f"{text or '(nothing recognized)'}  (no personal model in use: this is the shared model)"
    )

    # Switching the language redraws what is on screen, then signing out leaves nothing of this user behind.
    page.select_option("#language", "ko")
    expect(page.locator("#utterances tbody button")).to_have_text("삭제")
    expect(page.locator("#try-personal")).to_contain_text("공용 모델")
    page.select_option("#language", "en")
    page.click("#record")
    page.wait_for_timeout(1000)
    page.click("#stop")
    expect(page.locator("#take")).to_be_visible()
    page.click("#sign-out")
    sign_in(page, server, key, "nextuser")
    for gone in ("#take", "#try-result"):
        expect(page.locator(gone)).to_be_hidden()
    expect(page.locator("#status")).to_be_empty()
    expect(rows(page)).to_have_count(0)
    assert page.text_content("#summary-utterances") == "0"


def test_a_refused_key_is_shown_and_never_kept(page, page_server):
    server, _ = page_server
    page.goto(f"{server.url}/#key=ksk_000000000000_{'0' * 43}&user=someone")
    assert page.input_value("#user-id") == "someone" and "ksk_" not in page.url
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#error")).to_contain_text("did not accept this key")
    expect(page.locator("#workspace")).to_be_hidden()
    assert not key_stored(page, "ksk_000000000000")


def test_a_user_scoped_key_enrolls_its_user_and_no_other(page, page_server):
    server, _ = page_server
    page.goto(f"{server.url}/#key={server.scoped_key}&user=someone-else")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#error")).to_contain_text(f"acts as user '{SCOPED_USER}' only")
    expect(page.locator("#workspace")).to_be_hidden()
    sign_in(page, server, server.scoped_key, SCOPED_USER)
    assert page.text_content("#who-user") == SCOPED_USER


def test_an_existing_user_goes_on_and_a_reload_asks_for_the_key_again(page, page_server):
    server, key = page_server
    with server.client(key) as client:
        assert client.post("/v1/users", json={"user_id": "returning"}).status_code == 201
    page.goto(f"{server.url}/#key={key}&user=returning")
    assert page.input_value("#user-id") == "returning"
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#workspace")).to_be_visible()
    assert page.text_content("#who-user") == "returning"
    page.reload()
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.input_value("#user-id") == "returning" and page.input_value("#key") == ""
    assert not key_stored(page, key)

    # A link opened while someone is signed in is not taken up (its key leaves the address bar all the same).
    page.fill("#key", key)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#workspace")).to_be_visible()
    page.goto(f"{server.url}/#key=ksk_111111111111_{'1' * 43}&user=intruder")
    expect(page.locator("#workspace")).to_be_visible()
    assert page.text_content("#who-user") == "returning" and "ksk_" not in page.url


@pytest.mark.slow
def test_a_waiting_job_is_followed_once_and_no_longer_after_sign_out(page, idle_server, demo_user01):
    """On a server without a worker the job stays queued: the page follows it at one poll a second, and stops."""
    server, key = idle_server
    with server.client(key) as client:
        assert client.post("/v1/users", json={"user_id": "waiting"}).status_code == 201
        upload_utterances(client, "waiting", read_manifest(demo_user01["enroll"])[:MIN_ENROLLMENT])
        assert client.post("/v1/users/waiting/adapter", json={}).status_code == 202
    context = page.context
    context.grant_permissions(["microphone"], origin=server.url)
    polls = []
    page.on("request", lambda request: "/v1/jobs/" in request.url and polls.append(request.url))
    for _ in range(3):  # signing out and in again quickly leaves one poll loop, not three
        sign_in(page, server, key, "waiting")
        expect(page.locator("#job")).to_be_visible()
        page.click("#sign-out")
    sign_in(page, server, key, "waiting")
    expect(page.locator("#job-status")).to_have_text("Waiting for a worker…")
    expect(page.locator("#train")).to_be_disabled()
    polls.clear()
    page.wait_for_timeout(4000)
    assert 2 <= len(polls) <= 5, polls

    # A proxy answering 502 with an HTML page: said so, asked again, and followed on once the server is back.
    gateway = "**/v1/jobs/*"
    page.route(gateway, lambda route: route.fulfill(status=502, body="<h1>Bad Gateway</h1>", content_type="text/html"))
    expect(page.locator("#job-status")).to_contain_text("HTTP 502 without an explanation")
    page.unroute(gateway)
    expect(page.locator("#job-status")).to_have_text("Waiting for a worker…")
    expect(page.locator("#error")).to_be_hidden()
    page.click("#sign-out")
    page.wait_for_timeout(300)
    polls.clear()
    page.wait_for_timeout(2500)
    assert polls == []


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
        assert page.get_attribute("#take-audio", "aria-label") == "Your recording"
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
    for other in ("enroll.html", "secrets.txt"):
        missing = httpx.get(f"{server.url}/static/{other}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_page_is_not_part_of_the_api_schema(page_server):
    server, _ = page_server
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)


CROSS_ORIGIN_FETCH = """async ([url, key]) => {
    try {
        const answer = await fetch(url, {headers: {Authorization: `Bearer ${key}`}});
        return {status: answer.status, requestId: answer.headers.get("X-Request-ID"), body: await answer.json()};
    } catch (error) {
        return {refused: String(error)};
    }
}"""


def test_a_page_of_an_allowed_origin_calls_the_api_and_others_are_refused_by_the_browser(
    browser, page_server, other_site
):
    """Left alone in stop 39: without CORS no browser page of another origin could call the API. Chromium itself
    makes the preflight and enforces the answer here, as it would for a web app on its own domain."""
    server, key = page_server
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://localhost:{other_site}/")
        allowed = page.evaluate(CROSS_ORIGIN_FETCH, [f"{server.url}/v1/prompts", key])
        assert allowed["status"] == 200 and allowed["requestId"] and allowed["body"]["prompts"]
        refused_key = page.evaluate(CROSS_ORIGIN_FETCH, [f"{server.url}/v1/prompts", "ks_wrong"])
        assert refused_key["status"] == 401 and refused_key["body"]["error"]["code"] == "unauthorized"
        page.goto(f"http://127.0.0.1:{other_site}/")
        refused = page.evaluate(CROSS_ORIGIN_FETCH, [f"{server.url}/v1/prompts", key])
        assert "Failed to fetch" in refused["refused"]
    finally:
        context.close()
