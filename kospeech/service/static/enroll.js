// The enrollment page (GET /): sign in with an API key, read prompts aloud (or upload recordings of them), train a
// personal adapter and follow its job, compare transcriptions with and without it, delete everything.
// It talks only to the public /v1 API with the key the person enters, which it keeps in memory only (a reload asks
// for it again); every text that comes from the server is written with textContent, never as HTML.
"use strict";

(() => {
  const CONFIG = JSON.parse(document.getElementById("service-config").textContent);
  const LANGUAGE_STORAGE = "kospeech.language";
  const PROMPT_BATCH = 20;
  const POLL_MS = 1000;
  const MAX_POLL_MS = 30000;
  // Stop before the server's length limit: background tabs run timers up to a second late.
  const RECORDING_MARGIN_SECONDS = 1.0;
  const REQUEST_TIMEOUT_MS = 120000;
  // Containers MediaRecorder may produce, in order of preference, with the file name the server is sent.
  const RECORDING_FORMATS = [
    ["audio/webm;codecs=opus", "recording.webm"],
    ["audio/ogg;codecs=opus", "recording.ogg"],
    ["audio/mp4", "recording.m4a"],
  ];

  const TEXT = {
    en: {
      title: "Voice enrollment",
      language: "Language",
      signInTitle: "Sign in",
      signInHelp: "Enter the API key you were given and choose the name your voice will be kept under.",
      keyLabel: "API key",
      userLabel: "Your user id",
      userHelp: '1 to 64 letters, digits, "_", "-" or "."; not starting with ".".',
      start: "Start",
      signedInAs: "Enrolling as",
      signOut: "Sign out",
      summaryTitle: "Your enrollment",
      recordings: "Recordings",
      audio: "Audio",
      adapter: "Personal model",
      noAdapter: "none yet",
      recordTitle: "Read the sentences aloud",
      recordHelp:
        "Press Record, read the sentence in your usual voice, then press Stop. Listen, then keep it or record again.",
      record: "Record",
      stop: "Stop",
      skip: "Another sentence",
      keep: "Keep",
      discard: "Record again",
      orFile: "Or upload a recording of this sentence:",
      utterancesTitle: "Your recordings",
      sentence: "Sentence",
      seconds: "Seconds",
      actions: "Actions",
      deleteRecording: "Delete",
      deleteRecordingLabel: "Delete the recording of: {text}",
      trainTitle: "Train your personal model",
      adapterType: "Adapter type",
      train: "Train",
      tryTitle: "Try it",
      tryHelp: "Say anything, or upload a recording, and compare the shared model with your personal one.",
      tryFile: "Or upload a recording:",
      withAdapter: "Personal model",
      withoutAdapter: "Shared model",
      deleteTitle: "Delete my data",
      deleteHelp: "Removes every recording and personal model of yours from the server.",
      deleteButton: "Delete everything",
      promptCount: "Sentence {n}",
      secondsValue: "{s} s",
      adapterActive: "version {version} ({type}) in use; error rate {before} → {after}",
      adapterRejected: "version {version} ({type}) was not better ({before} → {after}); the shared model stays in use",
      trainNeed: "Record at least {min} sentences first ({n} so far).",
      trainReady: "{n} recordings. Training takes a few minutes; you may leave this page and come back.",
      jobQueued: "Waiting for a worker…",
      jobRunning: "Training… {percent} %",
      jobActivated: "Done: your personal model is in use (error rate {before} → {after}).",
      jobKept: "Done, but the new model was not better ({before} → {after}); the model in use stays.",
      jobFailed: "Training failed: {error}",
      recording: "Recording… press Stop when you are done.",
      uploading: "Uploading…",
      kept: "Kept ({s} s). Next sentence.",
      limitReached: "Stopped at the {s} s limit.",
      tooLarge: "The recording is larger than the server's limit of {mb} MiB.",
      micUnavailable: "This browser cannot record on this page (recording needs HTTPS or localhost); upload files instead.",
      micRefused: "The microphone could not be used: {error}",
      keyRefused: "The server did not accept this key: {message}",
      signedOut: "Signed out.",
      confirmDelete: "Delete every recording and personal model of {user}? This cannot be undone.",
      deleted: "Your recordings and personal models were deleted.",
      recordingDeleted: "Recording deleted.",
      transcribing: "Transcribing…",
      nothingHeard: "(nothing recognized)",
      personalVersion: "{text}  (personal model, version {version})",
      noPersonalModel: "{text}  (no personal model in use: this is the shared model)",
      networkError: "The server could not be reached: {error}",
      httpError: "The server answered HTTP {status} without an explanation.",
      unreadable: "The server's answer (HTTP {status}) could not be read.",
      retrying: "No answer from the server; asking again… ({error})",
      takeLabel: "Your recording",
    },
    ko: {
      title: "음성 등록",
      language: "언어",
      signInTitle: "시작하기",
      signInHelp: "받은 API 키를 입력하고, 목소리를 저장할 사용자 ID를 정하세요.",
      keyLabel: "API 키",
      userLabel: "사용자 ID",
      userHelp: '영문자, 숫자, "_", "-", "." 1~64자 ("."으로 시작할 수 없음).',
      start: "시작",
      signedInAs: "등록 중인 사용자:",
      signOut: "로그아웃",
      summaryTitle: "등록 현황",
      recordings: "녹음",
      audio: "녹음 길이",
      adapter: "개인 모델",
      noAdapter: "아직 없음",
      recordTitle: "문장을 소리 내어 읽어 주세요",
      recordHelp: "녹음을 누르고 평소 목소리로 문장을 읽은 뒤 정지를 누르세요. 들어 보고 저장하거나 다시 녹음하세요.",
      record: "녹음",
      stop: "정지",
      skip: "다른 문장",
      keep: "저장",
      discard: "다시 녹음",
      orFile: "또는 이 문장을 읽은 녹음 파일 올리기:",
      utterancesTitle: "내 녹음",
      sentence: "문장",
      seconds: "초",
      actions: "작업",
      deleteRecording: "삭제",
      deleteRecordingLabel: "녹음 삭제: {text}",
      trainTitle: "개인 모델 학습",
      adapterType: "어댑터 종류",
      train: "학습 시작",
      tryTitle: "사용해 보기",
      tryHelp: "아무 말이나 녹음하거나 파일을 올려서 공용 모델과 개인 모델의 결과를 비교해 보세요.",
      tryFile: "또는 녹음 파일 올리기:",
      withAdapter: "개인 모델",
      withoutAdapter: "공용 모델",
      deleteTitle: "내 데이터 삭제",
      deleteHelp: "서버에서 내 녹음과 개인 모델을 모두 지웁니다.",
      deleteButton: "모두 삭제",
      promptCount: "{n}번째 문장",
      secondsValue: "{s}초",
      adapterActive: "버전 {version} ({type}) 사용 중, 오류율 {before} → {after}",
      adapterRejected: "버전 {version} ({type})이 더 낫지 않아 ({before} → {after}) 공용 모델을 계속 사용합니다",
      trainNeed: "먼저 {min}개 이상 녹음해 주세요 (지금 {n}개).",
      trainReady: "녹음 {n}개. 학습에는 몇 분이 걸리며, 이 페이지를 떠났다가 다시 와도 됩니다.",
      jobQueued: "작업 대기 중…",
      jobRunning: "학습 중… {percent} %",
      jobActivated: "완료: 개인 모델을 사용합니다 (오류율 {before} → {after}).",
      jobKept: "완료했지만 새 모델이 더 낫지 않아 ({before} → {after}) 기존 모델을 계속 사용합니다.",
      jobFailed: "학습 실패: {error}",
      recording: "녹음 중… 끝나면 정지를 누르세요.",
      uploading: "올리는 중…",
      kept: "저장했습니다 ({s}초). 다음 문장입니다.",
      limitReached: "최대 길이 {s}초에 도달해 멈췄습니다.",
      tooLarge: "녹음이 서버 한도 {mb} MiB보다 큽니다.",
      micUnavailable: "이 페이지에서는 녹음할 수 없습니다 (HTTPS 또는 localhost 필요). 파일을 올려 주세요.",
      micRefused: "마이크를 사용할 수 없습니다: {error}",
      keyRefused: "서버가 이 키를 받아들이지 않았습니다: {message}",
      signedOut: "로그아웃했습니다.",
      confirmDelete: "{user}의 녹음과 개인 모델을 모두 삭제할까요? 되돌릴 수 없습니다.",
      deleted: "녹음과 개인 모델을 삭제했습니다.",
      recordingDeleted: "녹음을 삭제했습니다.",
      transcribing: "인식 중…",
      nothingHeard: "(인식된 내용 없음)",
      personalVersion: "{text}  (개인 모델, 버전 {version})",
      noPersonalModel: "{text}  (사용 중인 개인 모델이 없어 공용 모델의 결과입니다)",
      networkError: "서버에 연결할 수 없습니다: {error}",
      httpError: "서버가 설명 없이 HTTP {status}(으)로 응답했습니다.",
      unreadable: "서버의 응답(HTTP {status})을 읽을 수 없습니다.",
      retrying: "서버 응답이 없어 다시 묻는 중… ({error})",
      takeLabel: "내 녹음",
    },
  };

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // What one signed-in user's session has on screen; a new session starts from this.
  const sessionStart = () => ({
    working: 0, // requests the person started that have not answered yet
    record: null, // the last GET /v1/users/{id} answer
    utterances: [], // the last GET /v1/users/{id}/utterances answer
    prompts: [],
    currentPrompt: null,
    polling: null, // the id of the job being followed
    job: null, // the last answer about it
    tried: null, // {personal, base}: the last comparison
  });
  const state = {
    language: "en",
    session: 0, // increased at every sign-in and sign-out: answers to an earlier session's requests are dropped
    key: "",
    userId: "",
    take: null, // {blob, name, text}: a recording waiting for Keep or Record again, with the sentence it reads
    ...sessionStart(),
  };

  function t(name, values = {}) {
    const template = TEXT[state.language][name] ?? TEXT.en[name];
    return template.replace(/\{(\w+)\}/g, (_, field) => String(values[field]));
  }

  function say(message) {
    $("status").textContent = message;
  }

  function fail(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  // An answer to a request of a session that has ended: dropped without a word.
  class StaleAnswer extends Error {}

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, { json, form } = {}) {
    const session = state.session;
    const headers = { Authorization: `Bearer ${state.key}` };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (error) {
      if (session !== state.session) throw new StaleAnswer();
      throw new ApiError(0, "network", t("networkError", { error: error.message }));
    }
    const answer = response.status === 204 ? null : await response.json().catch(() => undefined);
    if (session !== state.session) throw new StaleAnswer();
    if (!response.ok) {
      // A proxy's error page has no JSON body (and over HTTP/2 no reason phrase either).
      const detail = answer?.error;
      throw new ApiError(
        response.status,
        detail?.code ?? `http_${response.status}`,
        detail?.message || t("httpError", { status: response.status }),
      );
    }
    if (answer === undefined) throw new ApiError(response.status, "unreadable", t("unreadable", { status: response.status }));
    return answer;
  }

  const userPath = (suffix = "") => `/v1/users/${encodeURIComponent(state.userId)}${suffix}`;

  // A failed request: a refused key ends the session, anything else is shown.
  function report(error) {
    if (error instanceof StaleAnswer) return;
    say("");
    if (error instanceof ApiError && error.status === 401) {
      signOut();
      fail(t("keyRefused", { message: error.message }));
    } else {
      fail(error.message);
    }
  }

  // Runs an action the person started, with the controls that could interfere disabled until it ends; then the
  // keyboard focus goes to `focus` (an element id) after a success, else back where it was.
  async function act(action, { focus } = {}) {
    const session = state.session;
    const origin = document.activeElement;
    fail("");
    state.working += 1;
    renderControls();
    let succeeded = false;
    try {
      await action();
      succeeded = true;
    } catch (error) {
      report(error);
    } finally {
      if (session === state.session) state.working -= 1;
      renderControls();
    }
    if (session !== state.session) return;
    const target = succeeded && focus ? $(focus) : origin;
    if (target?.isConnected && !target.disabled && !target.hidden) target.focus();
  }

  // ---- the key and the session ----

  // The key is a secret: it stays in this page's memory, never in storage or history that a browser writes to
  // disk or another page of the site could read. The user id, which is no secret, is kept in the history entry so
  // that a reload fills it in again.
  function rememberUser(userId) {
    history.replaceState({ userId }, "", location.pathname + location.search);
  }

  // A link may carry the key and the user id in its fragment, which browsers never send to the server: they fill
  // the sign-in form and leave the address bar. While someone is signed in, a link is not taken up.
  function takeFragment() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (!fragment.get("key") && !fragment.get("user")) return;
    history.replaceState(history.state, "", location.pathname + location.search);
    if (state.key) return;
    if (fragment.get("key")) $("key").value = fragment.get("key");
    if (fragment.get("user")) $("user-id").value = fragment.get("user");
  }

  // Everything on screen that belonged to the previous session goes.
  function resetWorkspace() {
    recorder.cancel();
    dropTake();
    Object.assign(state, sessionStart());
    $("job").hidden = true;
    $("job-progress").value = 0;
    delete $("job-status").dataset.outcome;
    say("");
    $("record").hidden = $("try-record").hidden = false;
    $("stop").hidden = $("try-stop").hidden = true;
    renderAll();
  }

  async function signIn(key, userId) {
    resetWorkspace();
    state.session += 1;
    state.key = key;
    state.userId = userId;
    try {
      await api("POST", "/v1/users", { json: { user_id: userId } });
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "user_exists")) throw error;
      // An existing user is enrolled further; an id that differs only in case from another stays refused.
      try {
        await api("GET", userPath());
      } catch (lookup) {
        throw lookup.status === 404 ? error : lookup;
      }
    }
    await refresh();
    rememberUser(userId);
    $("who-user").textContent = userId;
    $("sign-in").hidden = true;
    $("workspace").hidden = false;
    await nextPrompt();
    $("record").focus();
  }

  function signOut() {
    resetWorkspace();
    state.session += 1;
    state.key = "";
    $("workspace").hidden = true;
    $("sign-in").hidden = false;
    $("key").value = "";
    $("user-id").value = state.userId;
  }

  // ---- the user's record, recordings and job ----

  async function refresh() {
    const [record, listing] = await Promise.all([api("GET", userPath()), api("GET", userPath("/utterances"))]);
    state.record = record;
    state.utterances = listing.utterances;
    renderRecord();
    renderUtterances();
    renderPrompt();
    renderControls();
    const pending = record.jobs.findLast((job) => job.status === "queued" || job.status === "running");
    if (pending && state.polling !== pending.job_id) followJob(pending.job_id);
  }

  function percent(rate) {
    return rate === null || rate === undefined ? "?" : `${(100 * rate).toFixed(1)} %`;
  }

  function renderRecord() {
    const record = state.record;
    $("summary-utterances").textContent = String(record?.utterances ?? 0);
    $("summary-seconds").textContent = t("secondsValue", { s: (record?.audio_seconds ?? 0).toFixed(1) });
    const adapter = record?.adapter;
    $("summary-adapter").textContent = !adapter
      ? t("noAdapter")
      : t(adapter.active ? "adapterActive" : "adapterRejected", {
          version: adapter.version,
          type: adapter.adapter_type,
          before: percent(adapter.cer_before),
          after: percent(adapter.cer_after),
        });
    const count = record?.utterances ?? 0;
    const needed = CONFIG.min_enrollment_utterances;
    $("train-help").textContent = count < needed ? t("trainNeed", { min: needed, n: count }) : t("trainReady", { n: count });
  }

  // Which controls may be used now: one recording at a time, nothing that changes the sentence or the recordings
  // while a recording or a request the person started is under way.
  function renderControls() {
    const signedIn = state.record !== null;
    const recording = recorder.busy;
    const idle = signedIn && !recording && state.working === 0;
    for (const id of ["record", "try-record", "skip", "prompt-file", "try-file", "delete-user"]) $(id).disabled = !idle;
    $("keep").disabled = $("discard").disabled = recording || state.working > 0;
    $("train").disabled =
      !idle || state.polling !== null || state.record.utterances < CONFIG.min_enrollment_utterances;
    for (const button of $("utterances").querySelectorAll("button")) button.disabled = !idle;
  }

  function renderUtterances() {
    $("utterances").tBodies[0].replaceChildren(
      ...state.utterances.map((utterance) => {
        const row = document.createElement("tr");
        const text = document.createElement("td");
        text.textContent = utterance.text;
        text.lang = "ko";
        const seconds = document.createElement("td");
        seconds.textContent = utterance.duration.toFixed(1);
        const actions = document.createElement("td");
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "secondary";
        remove.textContent = t("deleteRecording");
        remove.setAttribute("aria-label", t("deleteRecordingLabel", { text: utterance.text }));
        remove.addEventListener("click", () =>
          act(async () => {
            await api("DELETE", userPath(`/utterances/${encodeURIComponent(utterance.utterance_id)}`));
            say(t("recordingDeleted"));
            await refresh();
          }, { focus: "record" }),
        );
        actions.append(remove);
        row.append(text, seconds, actions);
        return row;
      }),
    );
  }

  // Follows a job until it ends; a later session, or another job, ends the loop. A server that does not answer
  // (restarting, a proxy's 502) is asked again, less and less often.
  async function followJob(jobId) {
    const session = state.session;
    state.polling = jobId;
    state.job = null;
    delete $("job-status").dataset.outcome;
    $("job").hidden = false;
    renderJob();
    renderControls();
    let wait = POLL_MS;
    const following = () => state.session === session && state.polling === jobId;
    while (following()) {
      let job;
      try {
        job = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
        wait = POLL_MS;
      } catch (error) {
        if (error instanceof StaleAnswer) return;
        if (error.status === 0 || error.status >= 500) {
          if (!following()) return;
          $("job-status").textContent = t("retrying", { error: error.message });
          wait = Math.min(2 * wait, MAX_POLL_MS);
          await sleep(wait);
          continue;
        }
        if (!following()) return;
        state.polling = null;
        renderControls();
        report(error);
        return;
      }
      if (!following()) return;
      state.job = job;
      renderJob();
      if (job.status === "succeeded" || job.status === "failed") {
        state.polling = null;
        await refresh().catch(report);
        // The refresh may have found another job of the user (queued elsewhere) and be following it now.
        if (state.session !== session || state.polling !== null) return;
        $("job-status").dataset.outcome = job.status === "failed" ? "failed" : job.result.activated ? "activated" : "kept";
        renderControls();
        return;
      }
      await sleep(wait);
    }
  }

  function renderJob() {
    const job = state.job;
    $("job-progress").value = job?.progress ?? 0;
    if (!job || job.status === "queued") {
      $("job-status").textContent = t("jobQueued");
    } else if (job.status === "running") {
      $("job-status").textContent = t("jobRunning", { percent: Math.round(100 * job.progress) });
    } else if (job.status === "failed") {
      $("job-status").textContent = t("jobFailed", { error: job.error });
    } else {
      const values = { before: percent(job.result.cer_before), after: percent(job.result.cer_after) };
      $("job-status").textContent = t(job.result.activated ? "jobActivated" : "jobKept", values);
    }
  }

  // ---- prompts and recordings ----

  // The next sentence: never one the user has recorded already (the server's prompts are random), nor `alsoRead`.
  async function nextPrompt(alsoRead = []) {
    const recorded = new Set([...state.utterances.map((utterance) => utterance.text), ...alsoRead]);
    for (let round = 0; state.prompts.length === 0; round += 1) {
      const fresh = (await api("GET", `/v1/prompts?n=${PROMPT_BATCH}`)).prompts;
      const unread = fresh.filter((text) => !recorded.has(text) && text !== state.currentPrompt);
      // After three rounds of sentences already read (a user who has recorded most of the grammar), take them anyway.
      state.prompts = unread.length > 0 || round < 2 ? unread : fresh;
    }
    state.currentPrompt = state.prompts.shift();
    renderPrompt();
  }

  function renderPrompt() {
    $("prompt").textContent = state.currentPrompt ?? "";
    $("prompt-count").textContent = state.currentPrompt
      ? t("promptCount", { n: (state.record?.utterances ?? 0) + 1 })
      : "";
  }

  function checkSize(blob) {
    if (blob.size > CONFIG.max_upload_bytes) {
      throw new Error(t("tooLarge", { mb: (CONFIG.max_upload_bytes / 2 ** 20).toFixed(1) }));
    }
  }

  // Uploads one recording of `text`; once the server has it, the recording can never be sent again and the next
  // sentence comes up.
  async function enroll(blob, name, text) {
    checkSize(blob);
    say(t("uploading"));
    const form = new FormData();
    form.append("file", blob, name);
    form.append("text", text);
    const created = await api("POST", userPath("/utterances"), { form });
    dropTake();
    say(t("kept", { s: created.duration.toFixed(1) }));
    await nextPrompt([text]);
    await refresh();
  }

  // One microphone recording at a time, with a level meter, stopped at the server's length limit.
  class Recorder {
    constructor() {
      this.media = null;
      this.stream = null;
      this.context = null;
      this.frame = 0;
      this.timer = 0;
      this.stoppedAtLimit = null; // the limit in seconds when the last take ran into it
      this.starting = false; // waiting for the microphone (the browser may be asking the person)
    }

    static available() {
      return Boolean(navigator.mediaDevices?.getUserMedia && window.MediaRecorder);
    }

    get active() {
      return this.media?.state === "recording";
    }

    // Starting or recording: a second recording may not start.
    get busy() {
      return this.starting || this.active;
    }

    // Starts recording (rejects when the microphone is refused); `finished` resolves with {blob, name} once `stop`
    // is called or the length limit is reached.
    async start() {
      const format = RECORDING_FORMATS.find(([type]) => MediaRecorder.isTypeSupported(type));
      // Enrollment audio should sound like the user, not like a call: no echo cancelling or noise removal.
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      const media = new MediaRecorder(this.stream, format ? { mimeType: format[0] } : {});
      this.media = media;
      const name = format ? format[1] : "recording.webm";
      const chunks = [];
      this.stoppedAtLimit = null;
      media.addEventListener("dataavailable", (event) => event.data.size && chunks.push(event.data));
      const finished = new Promise((resolve) =>
        media.addEventListener("stop", () => resolve({ blob: new Blob(chunks, { type: media.mimeType }), name })),
      );
      media.start();
      // A timer, not the meter's animation frames, enforces the limit: browsers pause those in background tabs.
      const limit = CONFIG.max_audio_seconds - RECORDING_MARGIN_SECONDS;
      this.timer = setTimeout(() => {
        this.stoppedAtLimit = limit;
        this.stop();
      }, limit * 1000);
      this.meter();
      return { finished };
    }

    // The level meter and the timer on screen.
    meter() {
      this.context = new AudioContext();
      const analyser = this.context.createAnalyser();
      analyser.fftSize = 1024;
      this.context.createMediaStreamSource(this.stream).connect(analyser);
      const samples = new Float32Array(analyser.fftSize);
      const started = performance.now();
      $("meter").hidden = false;
      const draw = () => {
        analyser.getFloatTimeDomainData(samples);
        const rms = Math.sqrt(samples.reduce((sum, value) => sum + value * value, 0) / samples.length);
        $("meter-level").style.width = `${Math.min(60, 300 * rms)}%`;
        $("timer").textContent = t("secondsValue", { s: ((performance.now() - started) / 1000).toFixed(1) });
        this.frame = requestAnimationFrame(draw);
      };
      draw();
    }

    stop() {
      clearTimeout(this.timer);
      cancelAnimationFrame(this.frame);
      if (this.active) this.media.stop();
      for (const track of this.stream?.getTracks() ?? []) track.stop();
      this.stream = null;
      this.context?.close();
      this.context = null;
      $("meter").hidden = true;
    }

    cancel() {
      this.stop();
      this.media = null;
    }
  }

  const recorder = new Recorder();

  // Wires a Record/Stop pair to the recorder; `done` receives {blob, name, text} (`text`: the sentence shown when
  // the recording started); `starting` runs first.
  function recordWith(recordButton, stopButton, done, starting = () => {}) {
    recordButton.addEventListener("click", async () => {
      fail("");
      if (!Recorder.available()) {
        fail(t("micUnavailable"));
        return;
      }
      if (recorder.busy) return;
      const session = state.session;
      const text = state.currentPrompt;
      starting();
      // Locked before the microphone is asked for: the sentence and the other recorder may not change meanwhile.
      recorder.starting = true;
      renderControls();
      let finished;
      try {
        ({ finished } = await recorder.start());
      } catch (error) {
        recorder.cancel();
        fail(t("micRefused", { error: error.message }));
        return;
      } finally {
        recorder.starting = false;
        renderControls();
      }
      if (session !== state.session) {
        recorder.cancel();
        return;
      }
      recordButton.hidden = true;
      stopButton.hidden = false;
      stopButton.focus();
      renderControls();
      say(t("recording"));
      const take = await finished;
      if (session !== state.session) return;
      recordButton.hidden = false;
      renderControls();
      recordButton.focus(); // before Stop goes, so that the focus never falls to the page
      stopButton.hidden = true;
      const limit = recorder.stoppedAtLimit;
      say(limit === null ? "" : t("limitReached", { s: limit.toFixed(1) }));
      await done({ ...take, text });
    });
    stopButton.addEventListener("click", () => recorder.stop());
  }

  function showTake(take) {
    state.take = take;
    $("take-audio").src = URL.createObjectURL(take.blob);
    $("take").hidden = false;
    $("keep").focus();
  }

  function dropTake() {
    if (state.take) URL.revokeObjectURL($("take-audio").src);
    $("take-audio").removeAttribute("src");
    state.take = null;
    $("take").hidden = true;
  }

  // ---- trying the personal model ----

  function clearTried() {
    state.tried = null;
    renderTried();
  }

  async function compare(blob, name) {
    clearTried();
    checkSize(blob);
    say(t("transcribing"));
    const request = (extra) => {
      const form = new FormData();
      form.append("file", blob, name);
      form.append("response_format", "verbose_json");
      for (const [field, value] of Object.entries(extra)) form.append(field, value);
      return api("POST", "/v1/audio/transcriptions", { form });
    };
    // Sent together, the two requests meet in one batch on the server.
    const [personal, base] = await Promise.all([request({ user: state.userId }), request({})]);
    state.tried = { personal, base };
    renderTried();
    say("");
  }

  function renderTried() {
    $("try-result").hidden = state.tried === null;
    if (state.tried === null) return;
    const { personal, base } = state.tried;
    const shown = (answer) => answer.text || t("nothingHeard");
    $("try-personal").textContent = personal.adapter
      ? t("personalVersion", { text: shown(personal), version: personal.adapter.version })
      : t("noPersonalModel", { text: shown(personal) });
    $("try-base").textContent = shown(base);
  }

  // ---- language ----

  function renderAll() {
    renderRecord();
    renderUtterances();
    renderPrompt();
    if (state.job) renderJob();
    renderTried();
    renderControls();
  }

  function applyLanguage(language) {
    state.language = TEXT[language] ? language : "en";
    document.documentElement.lang = state.language;
    $("language").value = state.language;
    for (const element of document.querySelectorAll("[data-text]")) element.textContent = t(element.dataset.text);
    for (const element of document.querySelectorAll("[data-label]")) {
      element.setAttribute("aria-label", t(element.dataset.label));
    }
    renderAll();
  }

  // ---- wiring ----

  function start() {
    const stored = localStorage.getItem(LANGUAGE_STORAGE);
    applyLanguage(stored ?? (navigator.language?.toLowerCase().startsWith("ko") ? "ko" : "en"));
    $("language").addEventListener("change", (event) => {
      localStorage.setItem(LANGUAGE_STORAGE, event.target.value);
      applyLanguage(event.target.value);
    });
    for (const type of CONFIG.adapter_types) {
      $("adapter-type").append(new Option(type, type, false, type === CONFIG.default_adapter_type));
    }

    takeFragment();
    window.addEventListener("hashchange", takeFragment);

    $("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const submit = event.target.querySelector("button");
      fail("");
      submit.disabled = true;
      signIn($("key").value.trim(), $("user-id").value.trim())
        .catch((error) => {
          if (error instanceof StaleAnswer) return;
          signOut();
          fail(error.status === 401 ? t("keyRefused", { message: error.message }) : error.message);
        })
        .finally(() => (submit.disabled = false));
    });
    $("sign-out").addEventListener("click", () => {
      signOut();
      say(t("signedOut"));
      $("key").focus();
    });

    recordWith($("record"), $("stop"), async (take) => showTake(take), dropTake);
    $("keep").addEventListener("click", () =>
      act(() => enroll(state.take.blob, state.take.name, state.take.text), { focus: "record" }),
    );
    $("discard").addEventListener("click", () => {
      dropTake();
      $("record").focus();
    });
    $("skip").addEventListener("click", () =>
      act(async () => {
        dropTake();
        await nextPrompt();
      }),
    );
    $("prompt-file").addEventListener("change", (event) => {
      const file = event.target.files[0];
      event.target.value = "";
      if (!file) return;
      dropTake();
      act(() => enroll(file, file.name, state.currentPrompt));
    });

    $("train").addEventListener("click", () =>
      act(
        async () => {
          const created = await api("POST", userPath("/adapter"), { json: { adapter_type: $("adapter-type").value } });
          followJob(created.job_id);
        },
        { focus: "adapter-type" },
      ),
    );

    // A new try clears the last one's result at once: it never stands beside a recording it was not made from.
    recordWith($("try-record"), $("try-stop"), (take) => act(() => compare(take.blob, take.name)), clearTried);
    $("try-file").addEventListener("change", (event) => {
      const file = event.target.files[0];
      event.target.value = "";
      if (file) act(() => compare(file, file.name));
    });

    $("delete-user").addEventListener("click", () => {
      if (!confirm(t("confirmDelete", { user: state.userId }))) return;
      act(async () => {
        await api("DELETE", userPath());
        signOut();
        say(t("deleted"));
        $("key").focus();
      });
    });

    // After a reload the user id is filled in again; the key is asked for again.
    if (history.state?.userId && !$("user-id").value) $("user-id").value = history.state.userId;
  }

  start();
})();
