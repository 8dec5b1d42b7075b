// The labelling page: keyboard-first labelling; every label is saved at once through htmx.
(function () {
  "use strict";
  const app = document.getElementById("label-app");
  if (!app) return;
  const done = app.dataset.done === "1";
  const undoStack = []; // [stepId, previous value ("" = none)]
  let focused = 0;
  let activeSeconds = 0;
  let lastInput = Date.now();

  const rows = () => Array.from(document.querySelectorAll("#steps > li.step"));

  function focusRow(index) {
    const all = rows();
    if (!all.length) return;
    focused = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((row, i) => row.classList.toggle("focused", i === focused));
    all[focused].focus({ preventScroll: true });
    all[focused].scrollIntoView({ block: "nearest" });
  }

  function updateCount() {
    const all = rows();
    const labelled = all.filter((r) => r.dataset.value !== "").length;
    const counter = document.getElementById("progress-count");
    if (counter) counter.textContent = `${labelled} / ${all.length} labelled`;
  }

  function post(row, value) {
    const form = row.querySelector("form.step-controls");
    return htmx.ajax("POST", form.getAttribute("hx-post"), {
      target: "#" + row.id, swap: "outerHTML", values: { value: value },
    });
  }

  function label(value) {
    if (done) return;
    const row = rows()[focused];
    if (!row) return;
    undoStack.push([row.id, row.dataset.value]);
    post(row, value).then(() => {
      // In first-error mode a wrong step ends the work: jump to submit.
      if (app.dataset.mode === "first_error" && value === "-1") {
        document.getElementById("submit-button")?.focus();
      } else {
        focusRow(focused + 1);
      }
    });
  }

  function undo() {
    const last = undoStack.pop();
    if (!last) return;
    const row = document.getElementById(last[0]);
    if (!row) return;
    focused = rows().indexOf(row);
    post(row, last[1]).then(() => focusRow(focused));
  }

  function submitForms() {
    document.querySelectorAll("input[name=seconds]").forEach((input) => (input.value = String(activeSeconds)));
  }

  document.addEventListener("submit", submitForms, true);

  // After settling: htmx settles a swapped row's class attribute to the server's markup, which
  // would drop the focus mark set any earlier.
  document.body.addEventListener("htmx:afterSettle", () => {
    updateCount();
    focusRow(focused);
  });
  document.body.addEventListener("htmx:responseError", (event) => {
    document.getElementById("label-error").textContent = event.detail.xhr.responseText || "Saving failed.";
  });
  document.body.addEventListener("htmx:sendError", () => {
    document.getElementById("label-error").textContent = "Could not reach the server: the label was not saved.";
  });

  // Clicking a row focuses it, so the mouse and the keyboard agree on the current step.
  document.getElementById("steps").addEventListener("click", (event) => {
    const row = event.target.closest("li.step");
    if (row) focused = rows().indexOf(row);
    if (row) rows().forEach((r, i) => r.classList.toggle("focused", i === focused));
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || document.querySelector("dialog[open]")) return;
    const keys = {
      j: () => focusRow(focused + 1), ArrowDown: () => focusRow(focused + 1),
      k: () => focusRow(focused - 1), ArrowUp: () => focusRow(focused - 1),
      1: () => label("1"), c: () => label("1"),
      2: () => label("0"), n: () => label("0"),
      3: () => label("-1"), x: () => label("-1"),
      u: undo,
      "?": () => document.getElementById("keys-dialog").showModal(),
      g: () => document.getElementById("guidelines-dialog").showModal(),
      Enter: () => { if (!done) { submitForms(); document.getElementById("submit-form").requestSubmit(); } },
    };
    const action = keys[event.key];
    if (action) { event.preventDefault(); action(); }
  });

  document.getElementById("show-keys").addEventListener("click", () => document.getElementById("keys-dialog").showModal());
  document.getElementById("show-guidelines").addEventListener("click", () => document.getElementById("guidelines-dialog").showModal());

  // Form data carrying the page's CSRF token, for the posts made outside htmx.
  function csrfForm() {
    const body = new FormData();
    body.append("csrfmiddlewaretoken", document.querySelector("[name=csrfmiddlewaretoken]").value);
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

  window.addEventListener("load", () => { focusRow(0); prefetchNext(); });
})();
