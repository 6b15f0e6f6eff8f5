// The enrollment page (GET /): sign in with an API key, read prompts aloud (or upload recordings of them), train a
// personal adapter and follow its job, compare transcriptions with and without it, delete everything.
// It talks only to the public /v1 API, with the key kept in sessionStorage (gone when the tab closes); every text
// that comes from the server is written with textContent, never as HTML.
"use strict";

(() => {
  const CONFIG = JSON.parse(document.getElementById("service-config").textContent);
  const KEY_STORAGE = "kospeech.key";
  const USER_STORAGE = "kospeech.user";
  const LANGUAGE_STORAGE = "kospeech.language";
  const PROMPT_BATCH = 20;
  const POLL_MS = 1000;
  // Stop a little before the server's limit so that the encoder's last frames still fit.
  const RECORDING_MARGIN_SECONDS = 0.5;
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
      apiDocs: "API documentation",
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
      recording: "Recording… read the sentence, then press Stop.",
      uploading: "Uploading…",
      kept: "Kept ({s} s). Next sentence.",
      limitReached: "Stopped at the {s} s limit.",
      tooLarge: "The recording is larger than the server's limit of {mb} MB.",
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
      noPersonalModel: "{text}  (no personal model in use yet: this is the shared model)",
      networkError: "The server could not be reached: {error}",
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
      apiDocs: "API 문서",
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
      recording: "녹음 중… 문장을 읽고 정지를 누르세요.",
      uploading: "올리는 중…",
      kept: "저장했습니다 ({s}초). 다음 문장입니다.",
      limitReached: "최대 길이 {s}초에 도달해 멈췄습니다.",
      tooLarge: "녹음이 서버 한도 {mb} MB보다 큽니다.",
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
      noPersonalModel: "{text}  (아직 개인 모델이 없어 공용 모델의 결과입니다)",
      networkError: "서버에 연결할 수 없습니다: {error}",
    },
  };

  const $ = (id) => document.getElementById(id);
  const state = {
    language: "en",
    key: "",
    userId: "",
    record: null, // the last GET /v1/users/{id} answer
    prompts: [],
    promptNumber: 0,
    take: null, // {blob, name}: the recording waiting for Keep or Record again
    currentPrompt: null,
    polling: null, // the job id being followed
  };

  function t(name, values = {}) {
    const template = TEXT[state.language][name] ?? TEXT.en[name];
    return template.replace(/\{(\w+)\}/g, (_, field) => String(values[field]));
  }

  function applyLanguage(language) {
    state.language = TEXT[language] ? language : "en";
    document.documentElement.lang = state.language;
    $("language").value = state.language;
    for (const element of document.querySelectorAll("[data-text]")) {
      element.textContent = t(element.dataset.text);
    }
    if (state.record) renderRecord();
    renderPrompt();
  }

  function say(message) {
    $("status").textContent = message;
  }

  function fail(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, { json, form } = {}) {
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
      response = await fetch(path, { method, headers, body });
    } catch (error) {
      throw new ApiError(0, "network", t("networkError", { error: error.message }));
    }
    if (response.status === 204) return null;
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = answer?.error ?? { code: `http_${response.status}`, message: response.statusText };
      throw new ApiError(response.status, detail.code, detail.message);
    }
    return answer;
  }

  const userPath = (suffix = "") => `/v1/users/${encodeURIComponent(state.userId)}${suffix}`;

  // A failed call in the workspace: a refused key ends the session, anything else is shown.
  function report(error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut();
      fail(t("keyRefused", { message: error.message }));
    } else {
      fail(error.message);
    }
  }

  // Runs `action` with `buttons` disabled, reporting its failure.
  async function busy(buttons, action) {
    fail("");
    for (const button of buttons) button.disabled = true;
    try {
      await action();
    } catch (error) {
      report(error);
    } finally {
      for (const button of buttons) button.disabled = false;
      renderTrainButton();
    }
  }

  // ---- sign in and out ----

  async function signIn(key, userId) {
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
    sessionStorage.setItem(KEY_STORAGE, key);
    sessionStorage.setItem(USER_STORAGE, userId);
    $("who-user").textContent = userId;
    $("sign-in").hidden = true;
    $("workspace").hidden = false;
    state.prompts = [];
    state.promptNumber = 0;
    await Promise.all([refresh(), nextPrompt()]);
  }

  function signOut() {
    sessionStorage.removeItem(KEY_STORAGE);
    sessionStorage.removeItem(USER_STORAGE);
    state.key = "";
    state.record = null;
    state.polling = null;
    state.take = null;
    recorder.cancel();
    $("workspace").hidden = true;
    $("sign-in").hidden = false;
    $("key").value = "";
    $("user-id").value = state.userId;
  }

  // ---- the user's record, recordings and job ----

  async function refresh() {
    const [record, listing] = await Promise.all([api("GET", userPath()), api("GET", userPath("/utterances"))]);
    state.record = record;
    renderRecord();
    renderUtterances(listing.utterances);
    const pending = record.jobs.findLast((job) => job.status === "queued" || job.status === "running");
    if (pending && state.polling !== pending.job_id) followJob(pending.job_id);
  }

  function percent(rate) {
    return rate === null || rate === undefined ? "?" : `${(100 * rate).toFixed(1)} %`;
  }

  function renderRecord() {
    const record = state.record;
    $("summary-utterances").textContent = String(record.utterances);
    $("summary-seconds").textContent = t("secondsValue", { s: record.audio_seconds.toFixed(1) });
    const adapter = record.adapter;
    const values = adapter && {
      version: adapter.version,
      type: adapter.adapter_type,
      before: percent(adapter.cer_before),
      after: percent(adapter.cer_after),
    };
    $("summary-adapter").textContent = !adapter
      ? t("noAdapter")
      : t(adapter.active ? "adapterActive" : "adapterRejected", values);
    const needed = CONFIG.min_enrollment_utterances;
    $("train-help").textContent =
      record.utterances < needed ? t("trainNeed", { min: needed, n: record.utterances }) : t("trainReady", { n: record.utterances });
    renderTrainButton();
  }

  function renderTrainButton() {
    const record = state.record;
    $("train").disabled = !record || record.utterances < CONFIG.min_enrollment_utterances || state.polling !== null;
  }

  function renderUtterances(utterances) {
    const body = $("utterances").tBodies[0];
    body.replaceChildren(
      ...utterances.map((utterance) => {
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
          busy([remove], async () => {
            await api("DELETE", userPath(`/utterances/${encodeURIComponent(utterance.utterance_id)}`));
            say(t("recordingDeleted"));
            await refresh();
          }),
        );
        actions.append(remove);
        row.append(text, seconds, actions);
        return row;
      }),
    );
  }

  async function followJob(jobId) {
    state.polling = jobId;
    renderTrainButton();
    $("job").hidden = false;
    while (state.polling === jobId) {
      let job;
      try {
        job = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
      } catch (error) {
        if (error.status === 0) {
          // The server may be restarting: keep following the job.
          $("job-status").textContent = error.message;
          await new Promise((resolve) => setTimeout(resolve, 5 * POLL_MS));
          continue;
        }
        state.polling = null;
        report(error);
        break;
      }
      $("job-progress").value = job.progress;
      if (job.status === "queued") {
        $("job-status").textContent = t("jobQueued");
      } else if (job.status === "running") {
        $("job-status").textContent = t("jobRunning", { percent: Math.round(100 * job.progress) });
      } else {
        const result = job.result;
        $("job-status").textContent =
          job.status === "failed"
            ? t("jobFailed", { error: job.error })
            : t(result.activated ? "jobActivated" : "jobKept", {
                before: percent(result.cer_before),
                after: percent(result.cer_after),
              });
        $("job-status").dataset.outcome = job.status === "failed" ? "failed" : result.activated ? "activated" : "kept";
        state.polling = null;
        await refresh().catch(report);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    renderTrainButton();
  }

  // ---- prompts and recordings ----

  async function nextPrompt() {
    if (state.prompts.length === 0) {
      state.prompts = (await api("GET", `/v1/prompts?n=${PROMPT_BATCH}`)).prompts;
    }
    state.promptNumber += 1;
    state.currentPrompt = state.prompts.shift();
    renderPrompt();
  }

  function renderPrompt() {
    $("prompt").textContent = state.currentPrompt ?? "";
    $("prompt-count").textContent = state.promptNumber ? t("promptCount", { n: state.promptNumber }) : "";
  }

  function checkSize(blob) {
    if (blob.size > CONFIG.max_upload_bytes) {
      throw new Error(t("tooLarge", { mb: (CONFIG.max_upload_bytes / 2 ** 20).toFixed(1) }));
    }
  }

  async function enroll(blob, name) {
    checkSize(blob);
    say(t("uploading"));
    const form = new FormData();
    form.append("file", blob, name);
    form.append("text", state.currentPrompt);
    const created = await api("POST", userPath("/utterances"), { form });
    say(t("kept", { s: created.duration.toFixed(1) }));
    await Promise.all([refresh(), nextPrompt()]);
  }

  // One microphone recording at a time, with a level meter and the server's length limit.
  class Recorder {
    constructor() {
      this.media = null;
      this.stream = null;
      this.context = null;
      this.frame = 0;
      this.stoppedAtLimit = null; // the limit in seconds when the last take ran into it
    }

    static available() {
      return Boolean(navigator.mediaDevices?.getUserMedia && window.MediaRecorder);
    }

    // Starts recording (rejects when the microphone is refused); `finished` resolves with {blob, name} once `stop`
    // is called or the length limit is reached.
    async start() {
      const format = RECORDING_FORMATS.find(([type]) => MediaRecorder.isTypeSupported(type));
      // Enrollment audio should sound like the user, not like a call: no echo cancelling or noise removal.
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      this.media = new MediaRecorder(this.stream, format ? { mimeType: format[0] } : {});
      const name = format ? format[1] : "recording.webm";
      const chunks = [];
      this.stoppedAtLimit = null;
      this.media.addEventListener("dataavailable", (event) => event.data.size && chunks.push(event.data));
      const finished = new Promise((resolve) =>
        this.media.addEventListener("stop", () => resolve({ blob: new Blob(chunks, { type: this.media.mimeType }), name })),
      );
      this.media.start();
      this.watch();
      return { finished };
    }

    // The level meter and timer; stops the recording at the length limit.
    watch() {
      this.context = new AudioContext();
      const analyser = this.context.createAnalyser();
      analyser.fftSize = 1024;
      this.context.createMediaStreamSource(this.stream).connect(analyser);
      const samples = new Float32Array(analyser.fftSize);
      const started = performance.now();
      const limit = CONFIG.max_audio_seconds - RECORDING_MARGIN_SECONDS;
      $("meter").hidden = false;
      const draw = () => {
        analyser.getFloatTimeDomainData(samples);
        const rms = Math.sqrt(samples.reduce((sum, value) => sum + value * value, 0) / samples.length);
        $("meter-level").style.width = `${Math.min(60, 300 * rms)}%`;
        const seconds = (performance.now() - started) / 1000;
        $("timer").textContent = t("secondsValue", { s: seconds.toFixed(1) });
        if (seconds >= limit) {
          this.stoppedAtLimit = limit;
          this.stop();
          return;
        }
        this.frame = requestAnimationFrame(draw);
      };
      draw();
    }

    stop() {
      cancelAnimationFrame(this.frame);
      if (this.media?.state === "recording") this.media.stop();
      for (const track of this.stream?.getTracks() ?? []) track.stop();
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

  // Wires a Record/Stop button pair to the recorder; `done` receives {blob, name}.
  function recordWith(recordButton, stopButton, done) {
    recordButton.addEventListener("click", async () => {
      fail("");
      if (!Recorder.available()) {
        fail(t("micUnavailable"));
        return;
      }
      let finished;
      try {
        ({ finished } = await recorder.start());
      } catch (error) {
        recorder.cancel();
        fail(t("micRefused", { error: error.message }));
        return;
      }
      recordButton.hidden = true;
      stopButton.hidden = false;
      say(t("recording"));
      const take = await finished;
      recordButton.hidden = false;
      stopButton.hidden = true;
      const limit = recorder.stoppedAtLimit;
      say(limit === null ? "" : t("limitReached", { s: limit.toFixed(1) }));
      if (state.key) await done(take);
    });
    stopButton.addEventListener("click", () => recorder.stop());
  }

  function showTake(take) {
    state.take = take;
    $("take-audio").src = URL.createObjectURL(take.blob);
    $("take").hidden = false;
  }

  function dropTake() {
    if (state.take) URL.revokeObjectURL($("take-audio").src);
    $("take-audio").removeAttribute("src");
    state.take = null;
    $("take").hidden = true;
  }

  // ---- trying the personal model ----

  async function compare(blob, name) {
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
    const shown = (answer) => answer.text || t("nothingHeard");
    $("try-personal").textContent = personal.adapter
      ? t("personalVersion", { text: shown(personal), version: personal.adapter.version })
      : t("noPersonalModel", { text: shown(personal) });
    $("try-base").textContent = shown(base);
    $("try-result").hidden = false;
    say("");
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
      const option = new Option(type, type, false, type === CONFIG.default_adapter_type);
      $("adapter-type").append(option);
    }

    // A link may carry the key in its fragment (never sent to the server or kept in its logs): take it and hide it.
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.get("key")) {
      sessionStorage.setItem(KEY_STORAGE, fragment.get("key"));
      history.replaceState(null, "", location.pathname + location.search);
    }
    if (fragment.get("user")) $("user-id").value = fragment.get("user");
    $("key").value = sessionStorage.getItem(KEY_STORAGE) ?? "";

    $("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const submit = event.target.querySelector("button");
      fail("");
      submit.disabled = true;
      signIn($("key").value.trim(), $("user-id").value.trim())
        .catch((error) => {
          state.key = "";
          fail(error.status === 401 ? t("keyRefused", { message: error.message }) : error.message);
        })
        .finally(() => (submit.disabled = false));
    });
    $("sign-out").addEventListener("click", () => {
      signOut();
      say(t("signedOut"));
    });

    recordWith($("record"), $("stop"), async (take) => showTake(take));
    $("keep").addEventListener("click", () =>
      busy([$("keep"), $("discard"), $("record")], async () => {
        await enroll(state.take.blob, state.take.name);
        dropTake();
      }),
    );
    $("discard").addEventListener("click", dropTake);
    $("skip").addEventListener("click", () =>
      busy([$("skip")], async () => {
        dropTake();
        await nextPrompt();
      }),
    );
    $("prompt-file").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (!file) return;
      busy([$("record"), $("skip")], async () => {
        try {
          await enroll(file, file.name);
        } finally {
          event.target.value = "";
        }
      });
    });

    $("train").addEventListener("click", () =>
      busy([$("train")], async () => {
        const created = await api("POST", userPath("/adapter"), { json: { adapter_type: $("adapter-type").value } });
        delete $("job-status").dataset.outcome;
        followJob(created.job_id);
      }),
    );

    recordWith($("try-record"), $("try-stop"), (take) => busy([$("try-record")], () => compare(take.blob, take.name)));
    $("try-file").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (!file) return;
      busy([$("try-record")], async () => {
        try {
          await compare(file, file.name);
        } finally {
          event.target.value = "";
        }
      });
    });

    $("delete-user").addEventListener("click", () => {
      if (!confirm(t("confirmDelete", { user: state.userId }))) return;
      busy([$("delete-user")], async () => {
        await api("DELETE", userPath());
        signOut();
        say(t("deleted"));
      });
    });

    const storedUser = sessionStorage.getItem(USER_STORAGE);
    if (storedUser && $("key").value) {
      $("user-id").value = storedUser;
      signIn($("key").value, storedUser).catch((error) => {
        signOut();
        fail(error.message);
      });
    }
  }

  start();
})();
