// The labelling page: keyboard-first labelling that never loses a keypress.
//
// A key labels the focused step and moves the focus at once; the save is keyed by that step's
// id and goes through the step's own queue (one request in flight per step, the last value
// wins, sent in order), so a response never lands on "whatever is focused" when it returns.
// Each row shows pending / saved / failed; failed saves stay visible and are retried with
// backoff. Which steps still need a label is the server's call (`missing_step_ids`).
(function () {
  "use strict";
  const app = document.getElementById("label-app");
  if (!app) return;
  const done = app.dataset.done === "1";
  const errorBox = document.getElementById("label-error");
  const csrf = () => document.querySelector("[name=csrfmiddlewaretoken]").value;
  const RETRY_MS = [500, 1000, 2000, 4000, 8000]; // then every 8 s until it goes through
  const undoStack = []; // [stepId, the value wanted before ("" = none)]
  const queues = new Map(); // stepId -> {want, saved, inflight, failed, attempts, timer, error}
  let focused = 0;
  let keyCount = 0; // keys pressed so far: a save answered with no key since it was sent = a pause
  let submitWaiting = false; // Enter was pressed while saves were in flight
  let submitRefused = false; // Enter was pressed while a save had failed
  let activeSeconds = 0;
  let lastInput = Date.now();

  const rows = () => Array.from(document.querySelectorAll("#steps > li.step"));
  const rowOf = (stepId) => document.getElementById("step-" + stepId);
  const stepNumber = (stepId) => Number(rowOf(stepId)?.dataset.index ?? 0) + 1;

  function focusRow(index) {
    const all = rows();
    if (!all.length) return;
    focused = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((row, i) => row.classList.toggle("focused", i === focused));
    all[focused].focus({ preventScroll: true });
    all[focused].scrollIntoView({ block: "nearest" });
  }

  function queueOf(row) {
    const id = row.dataset.step;
    if (!queues.has(id)) {
      queues.set(id, { want: row.dataset.value, saved: row.dataset.value, inflight: false, failed: false, final: false, attempts: 0, timer: null, error: "" });
    }
    return queues.get(id);
  }

  // Draw a row from its queue: the value shown is the one wanted; the badge says whether it is stored.
  function draw(row) {
    const q = queueOf(row);
    row.dataset.value = q.want;
    row.classList.toggle("is-correct", q.want === "1");
    row.classList.toggle("is-neutral", q.want === "0");
    row.classList.toggle("is-incorrect", q.want === "-1");
    row.querySelectorAll("button.lbl").forEach((b) => b.classList.toggle("on", b.value === q.want));
    const state = q.failed ? "failed" : q.inflight || q.timer || q.want !== q.saved ? "pending" : q.want === "" ? "" : "saved";
    row.dataset.save = state;
    const badge = row.querySelector(".save-state");
    if (badge) {
      badge.textContent = { pending: "saving…", saved: "saved", failed: q.final ? "not saved" : "not saved: retrying", "": "" }[state];
      badge.title = q.failed ? q.error : "";
    }
    updateCount();
  }

  function updateCount() {
    const all = rows();
    const labelled = all.filter((r) => r.dataset.value !== "").length;
    const counter = document.getElementById("progress-count");
    if (counter) counter.textContent = `${labelled} / ${all.length} labelled`;
    notice();
  }

  // One line under the steps says what is not stored yet and why, or that Enter is waiting.
  function notice() {
    const waiting = unsavedSteps();
    const failed = waiting.filter((id) => queues.get(id).failed);
    if (!failed.length) submitRefused = false;
    const numbers = (ids) => ids.map(stepNumber).join(", ");
    const retrying = failed.filter((id) => !queues.get(id).final);
    const given = failed.filter((id) => queues.get(id).final).map((id) => `step ${stepNumber(id)}: ${queues.get(id).error}`);
    const parts = [];
    if (retrying.length) parts.push(`step ${numbers(retrying)} not saved (retrying)`);
    if (given.length) parts.push(`not saved: ${given.join("; ")}`);
    if (parts.length) errorBox.textContent = (submitRefused ? "Not submitted: " : "") + parts.join("; ") + ".";
    else if (submitWaiting && waiting.length) errorBox.textContent = `Submitting once step ${numbers(waiting)} is saved…`;
    else errorBox.textContent = "";
  }

  // Steps whose wanted value is not yet stored (pending or failed), in page order.
  function unsavedSteps() {
    return rows().map((r) => r.dataset.step).filter((id) => {
      const q = queues.get(id);
      return q && (q.inflight || q.failed || q.timer || q.want !== q.saved);
    });
  }

  // The server's list of steps still to label (absent: nothing known, nothing marked).
  function showMissing(ids, paused) {
    if (!Array.isArray(ids)) return;
    const missing = new Set(ids.map(String));
    rows().forEach((r) => r.classList.toggle("missing", missing.has(r.dataset.step)));
    app.dataset.missingStepIds = ids.join(",");
    // Nothing left to label and the annotator has paused: offer the submit button.
    if (!missing.size && paused && !unsavedSteps().length) document.getElementById("submit-button")?.focus();
  }

  function send(row) {
    const q = queueOf(row);
    if (q.inflight) return; // the answer of the one in flight sends the newer value
    clearTimeout(q.timer); q.timer = null;
    const value = q.want;
    q.inflight = true;
    draw(row);
    const started = performance.now();
    const keysAtSend = keyCount;
    fetch(row.dataset.saveUrl, {
      method: value === "" ? "DELETE" : "PUT",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json" },
      body: value === "" ? undefined : JSON.stringify({ value: Number(value) }),
      credentials: "same-origin",
    }).then(async (response) => {
      const body = response.status === 204 ? {} : await response.json().catch(() => ({}));
      if (!response.ok) throw Object.assign(new Error(body.error || `server answered ${response.status}`), { status: response.status });
      q.inflight = false; q.failed = false; q.final = false; q.attempts = 0; q.error = "";
      q.saved = value;
      if (q.want !== q.saved) send(row); // typed again meanwhile: the last value wins
      else {
        // Keypress-to-saved times, for the browser tests that measure them (off otherwise).
        window.stepmarkSaveTimes?.push({ step: row.dataset.step, ms: performance.now() - q.wantedAt, request_ms: performance.now() - started }); draw(row); showMissing(body.missing_step_ids, keyCount === keysAtSend); settle(); }
    }).catch((error) => {
      q.inflight = false; q.failed = true; q.error = error.message;
      // 409 (item finished), 400, 403, 404 will not change by retrying; anything else may.
      q.final = [400, 403, 404, 409].includes(error.status);
      if (!q.final) q.timer = setTimeout(() => { q.timer = null; send(row); }, RETRY_MS[Math.min(q.attempts, RETRY_MS.length - 1)]);
      q.attempts += 1;
      draw(row);
      settle();
    });
  }

  function setValue(row, value) {
    const q = queueOf(row);
    if (q.want === value && !q.failed) return;
    q.want = value;
    q.wantedAt = performance.now();
    if (q.final) { q.final = false; q.attempts = 0; } // a new value is worth one more try
    draw(row);
    send(row);
  }

  function label(value) {
    if (done) return;
    const row = rows()[focused];
    if (!row) return;
    undoStack.push([row.dataset.step, queueOf(row).want]);
    setValue(row, value);
    focusRow(focused + 1);
  }

  function undo() {
    const last = undoStack.pop();
    if (!last) return;
    const row = rowOf(last[0]);
    if (!row) return;
    focusRow(rows().indexOf(row));
    setValue(row, last[1]);
  }

  function submitForms() {
    document.querySelectorAll("input[name=seconds]").forEach((input) => (input.value = String(activeSeconds)));
  }

  // Enter: submit once every save is stored; wait while some are in flight; refuse while one failed.
  function trySubmit() {
    if (done) return;
    const waiting = unsavedSteps();
    const failed = waiting.filter((id) => queues.get(id).failed);
    if (failed.length) { submitWaiting = false; submitRefused = true; notice(); return; }
    if (waiting.length) { submitWaiting = true; notice(); return; }
    submitWaiting = false;
    submitForms();
    document.getElementById("submit-form").requestSubmit();
  }

  function settle() {
    if (submitWaiting) trySubmit();
  }

  document.addEventListener("submit", submitForms, true);
  document.getElementById("submit-form")?.addEventListener("submit", (event) => {
    // The submit button (mouse) follows the same rule as Enter.
    if (unsavedSteps().length) { event.preventDefault(); trySubmit(); }
  });

  // A click on a label button labels that row (same queue as the keyboard); a click elsewhere focuses it.
  document.getElementById("steps").addEventListener("click", (event) => {
    const row = event.target.closest("li.step");
    if (!row) return;
    focused = rows().indexOf(row);
    rows().forEach((r, i) => r.classList.toggle("focused", i === focused));
    const button = event.target.closest("button.lbl");
    if (button && !done) {
      event.preventDefault();
      undoStack.push([row.dataset.step, queueOf(row).want]);
      setValue(row, button.value);
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || document.querySelector("dialog[open]")) return;
    keyCount += 1;
    const keys = {
      j: () => focusRow(focused + 1), ArrowDown: () => focusRow(focused + 1),
      k: () => focusRow(focused - 1), ArrowUp: () => focusRow(focused - 1),
      1: () => label("1"), c: () => label("1"),
      2: () => label("0"), n: () => label("0"),
      3: () => label("-1"), x: () => label("-1"),
      u: undo,
      "?": () => document.getElementById("keys-dialog").showModal(),
      g: () => document.getElementById("guidelines-dialog").showModal(),
      Enter: trySubmit,
    };
    const action = keys[event.key];
    if (action) { event.preventDefault(); action(); }
  });

  document.getElementById("show-keys").addEventListener("click", () => document.getElementById("keys-dialog").showModal());
  document.getElementById("show-guidelines").addEventListener("click", () => document.getElementById("guidelines-dialog").showModal());
  window.addEventListener("beforeunload", (event) => { if (unsavedSteps().length) event.preventDefault(); });

  // Form data carrying the page's CSRF token, for the posts made outside the label queue.
  function csrfForm() {
    const body = new FormData();
    body.append("csrfmiddlewaretoken", csrf());
    return body;
  }

  // Time on task: count seconds with recent input and a visible page; save it every 30 s.
  ["keydown", "mousemove", "click", "scroll"].forEach((type) => document.addEventListener(type, () => (lastInput = Date.now()), { passive: true }));
  let unsaved = 0;
  setInterval(() => {
    if (document.visibilityState === "visible" && Date.now() - lastInput < 60000) { activeSeconds += 1; unsaved += 1; }
  }, 1000);
  setInterval(() => {
    if (unsaved > 0 && !done) {
      const body = csrfForm(); body.append("seconds", String(unsaved));
      fetch(app.dataset.heartbeat, { method: "POST", body, credentials: "same-origin" });
      activeSeconds -= unsaved; unsaved = 0;
    }
  }, 30000);

  // Fetch the next item ahead (its page and images), so "submit & next" costs no wait.
  function prefetchNext() {
    if (done) return;
    fetch(app.dataset.prefetch, { method: "POST", body: csrfForm(), credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : { url: null, images: [] }))
      .then((next) => {
        [next.url, ...next.images].filter(Boolean).forEach((href) => {
          const link = document.createElement("link");
          link.rel = "prefetch"; link.href = href;
          document.head.appendChild(link);
        });
        app.dataset.nextUrl = next.url || "";
      })
      .catch(() => {});
  }

  // Start on the first step still to label: the server's list when it sent one, else the first unlabelled.
  function firstToLabel() {
    const all = rows();
    if (app.dataset.missingStepIds !== undefined) {
      const first = app.dataset.missingStepIds.split(",").filter(Boolean)[0];
      const index = first ? all.findIndex((r) => r.dataset.step === first) : -1;
      if (index >= 0) return index;
    }
    const unlabelled = all.findIndex((r) => r.dataset.value === "");
    return unlabelled >= 0 ? unlabelled : Math.max(all.length - 1, 0);
  }

  rows().forEach(draw);
  if (app.dataset.missingStepIds !== undefined) showMissing(app.dataset.missingStepIds.split(",").filter(Boolean), false);
  focusRow(firstToLabel());
  window.addEventListener("load", prefetchNext);
})();
