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
  const undoStack = []; // [stepId, the value wanted before ("" = none), its error category, its note]
  const queues = new Map(); // stepId -> {want, saved, cat, savedCat, note, savedNote, inflight, failed, attempts, timer, error}
  // Error categories (projects that enable them): a picker opens on the row right after "incorrect";
  // keys 1..n choose, Escape (or any other key) skips; "other" asks for a note.
  const picker = document.getElementById("error-picker");
  const choices = picker ? Array.from(picker.querySelectorAll(".error-choice")) : [];
  const noteForm = picker?.querySelector(".error-note-form");
  const noteInput = picker?.querySelector(".error-note");
  let picking = null; // the row whose picker is open
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
      const cat = row.dataset.category || "", note = row.dataset.note || "";
      queues.set(id, { want: row.dataset.value, saved: row.dataset.value, cat, savedCat: cat, note, savedNote: note, inflight: false, failed: false, final: false, attempts: 0, timer: null, error: "" });
    }
    return queues.get(id);
  }

  // Whether the wanted label (value, category, note) differs from the stored one.
  const dirty = (q) => q.want !== q.saved || q.cat !== q.savedCat || q.note !== q.savedNote;

  // Draw a row from its queue: the value shown is the one wanted; the badge says whether it is stored.
  function draw(row) {
    const q = queueOf(row);
    row.dataset.value = q.want;
    row.dataset.category = q.cat;
    row.dataset.note = q.note;
    const tag = row.querySelector(".error-cat");
    if (tag) {
      tag.hidden = !q.cat;
      tag.textContent = q.cat ? "error: " + q.cat + (q.note ? ": " + q.note : "") : "";
    }
    row.classList.toggle("is-correct", q.want === "1");
    row.classList.toggle("is-neutral", q.want === "0");
    row.classList.toggle("is-incorrect", q.want === "-1");
    row.querySelectorAll("button.lbl").forEach((b) => b.classList.toggle("on", b.value === q.want));
    const state = q.failed ? "failed" : q.inflight || q.timer || dirty(q) ? "pending" : q.want === "" ? "" : "saved";
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
      return q && (q.inflight || q.failed || q.timer || dirty(q));
    });
  }

  // The server's list of steps still to label (absent: nothing known, nothing marked).
  function showMissing(ids, paused) {
    if (!Array.isArray(ids)) return;
    const missing = new Set(ids.map(String));
    rows().forEach((r) => r.classList.toggle("missing", missing.has(r.dataset.step)));
    app.dataset.missingStepIds = ids.join(",");
    // Nothing left to label and the annotator has paused: offer the submit button.
    // Never while the error-category picker (or its note) is open: that would take the typing away.
    if (!missing.size && paused && !picking && !unsavedSteps().length) document.getElementById("submit-button")?.focus();
  }

  function send(row) {
    const q = queueOf(row);
    if (q.inflight) return; // the answer of the one in flight sends the newer value
    clearTimeout(q.timer); q.timer = null;
    const value = q.want, cat = q.cat, note = q.note;
    q.inflight = true;
    draw(row);
    const started = performance.now();
    const keysAtSend = keyCount;
    fetch(row.dataset.saveUrl, {
      method: value === "" ? "DELETE" : "PUT",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json" },
      body: value === "" ? undefined : JSON.stringify(cat ? { value: Number(value), error_category: cat, error_note: note } : { value: Number(value) }),
      credentials: "same-origin",
    }).then(async (response) => {
      const body = response.status === 204 ? {} : await response.json().catch(() => ({}));
      if (!response.ok) throw Object.assign(new Error(body.error || `server answered ${response.status}`), { status: response.status });
      q.inflight = false; q.failed = false; q.final = false; q.attempts = 0; q.error = "";
      q.saved = value; q.savedCat = cat; q.savedNote = note;
      if (dirty(q)) send(row); // typed again meanwhile: the last value wins
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

  function setValue(row, value, cat = "", note = "") {
    const q = queueOf(row);
    if (value !== "-1") { cat = ""; note = ""; } // a category says why a step is incorrect
    if (q.want === value && q.cat === cat && q.note === note && !q.failed) return;
    q.want = value; q.cat = cat; q.note = note;
    q.wantedAt = performance.now();
    if (q.final) { q.final = false; q.attempts = 0; } // a new value is worth one more try
    draw(row);
    send(row);
  }

  function remember(row) {
    const q = queueOf(row);
    undoStack.push([row.dataset.step, q.want, q.cat, q.note]);
  }

  // Label a row; "incorrect" in a project with error categories opens the picker on it first.
  function labelRow(row, value) {
    const q = queueOf(row);
    remember(row);
    if (value === "-1" && picker && choices.length) {
      const keep = q.want === "-1"; // labelled incorrect already: its category stays unless another is chosen
      setValue(row, "-1", keep ? q.cat : "", keep ? q.note : "");
      openPicker(row);
      return;
    }
    setValue(row, value);
    focusRow(rows().indexOf(row) + 1);
  }

  function label(value) {
    if (done) return;
    const row = rows()[focused];
    if (!row) return;
    labelRow(row, value);
  }

  function openPicker(row) {
    picking = row;
    const q = queueOf(row);
    choices.forEach((b) => b.classList.toggle("on", b.dataset.category === q.cat));
    noteForm.hidden = true; noteInput.value = "";
    row.appendChild(picker);
    picker.hidden = false;
    focusRow(rows().indexOf(row));
  }

  // Close the picker; `advance` moves on to the next step, as any label does.
  function closePicker(advance) {
    const row = picking;
    if (!row) return;
    picking = null;
    picker.hidden = true;
    noteForm.hidden = true;
    if (advance) focusRow(rows().indexOf(row) + 1);
    else focusRow(rows().indexOf(row));
  }

  function choose(index) {
    const row = picking, name = choices[index]?.dataset.category;
    if (!row || !name) return;
    setValue(row, "-1", name, name === "other" ? queueOf(row).note : "");
    choices.forEach((b) => b.classList.toggle("on", b.dataset.category === name));
    if (name === "other" && noteForm) {
      noteForm.hidden = false;
      noteInput.value = queueOf(row).note;
      noteInput.focus();
      return;
    }
    closePicker(true);
  }

  if (picker) {
    picker.addEventListener("click", (event) => {
      const button = event.target.closest(".error-choice");
      if (button) { event.preventDefault(); event.stopPropagation(); choose(choices.indexOf(button)); }
    });
    noteInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        if (picking) setValue(picking, "-1", "other", noteInput.value.trim());
        closePicker(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        closePicker(true);
      }
      event.stopPropagation();
    });
    noteForm.addEventListener("submit", (event) => event.preventDefault());
  }

  function undo() {
    const last = undoStack.pop();
    if (!last) return;
    const row = rowOf(last[0]);
    if (!row) return;
    focusRow(rows().indexOf(row));
    setValue(row, last[1], last[2] || "", last[3] || "");
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
      if (picking && picking !== row) closePicker(false);
      labelRow(row, button.value);
      if (!picking) focusRow(rows().indexOf(row)); // a click labels that row and stays on it
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || document.querySelector("dialog[open]")) return;
    keyCount += 1;
    if (picking) {
      const index = /^[1-9]$/.test(event.key) ? Number(event.key) - 1 : -1;
      if (index >= 0 && index < choices.length) { event.preventDefault(); choose(index); return; }
      if (event.key === "Escape") { event.preventDefault(); closePicker(true); return; }
      closePicker(true); // any other key skips the category and does what it always does
    }
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
