// The review page by keyboard: j/k (arrows) move between steps, 1/c 2/n 3/x set the focused step's
// gold label (the labelling page's keys), ] and [ go to the next and previous solution of the
// filtered list, d to the next disputed solution. Links and buttons work without this script.
(function () {
  "use strict";
  const app = document.getElementById("review-app");
  const body = document.getElementById("review-steps");
  if (!app || !body) return;
  let focused = 0;
  const rows = () => Array.from(body.querySelectorAll("tr.review-row"));

  function focusRow(index) {
    const all = rows();
    if (!all.length) return;
    focused = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((row, i) => row.classList.toggle("focused", i === focused));
    all[focused].scrollIntoView({ block: "nearest" });
  }

  // Set the gold label of a row through its own form (the server answers with the redrawn row).
  function setGold(row, value) {
    const form = row.querySelector("form");
    if (!form) return;
    const data = new FormData(form);
    data.set("value", value);
    row.dataset.saving = "1";
    return fetch(form.action, { method: "POST", body: data, headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(async (response) => {
        if (!response.ok) throw new Error(await response.text());
        const holder = document.createElement("tbody");
        holder.innerHTML = await response.text();
        const fresh = holder.querySelector("tr.review-row");
        if (fresh) {
          const index = rows().indexOf(row);
          row.replaceWith(fresh);
          if (window.htmx) window.htmx.process(fresh);
          window.stepmarkMath?.render?.(fresh);
          if (index === focused) fresh.classList.add("focused");
        }
      })
      .catch((error) => { row.dataset.saving = ""; row.title = "not saved: " + error.message; row.classList.add("failed"); });
  }

  function go(id) {
    const link = document.getElementById(id);
    if (link && link.href) window.location.assign(link.href);
  }

  body.addEventListener("click", (event) => {
    const row = event.target.closest("tr.review-row");
    if (!row || event.target.closest("button, a, summary")) return;
    focusRow(rows().indexOf(row));
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || document.querySelector("dialog[open]")) return;
    const gold = (value) => () => { const row = rows()[focused]; if (row) { setGold(row, value); focusRow(focused + 1); } };
    const keys = {
      j: () => focusRow(focused + 1), ArrowDown: () => focusRow(focused + 1),
      k: () => focusRow(focused - 1), ArrowUp: () => focusRow(focused - 1),
      1: gold("1"), c: gold("1"), 2: gold("0"), n: gold("0"), 3: gold("-1"), x: gold("-1"),
      "]": () => go("next-solution"), "[": () => go("previous-solution"), d: () => go("next-disputed"),
      "?": () => document.getElementById("keys-dialog").showModal(),
    };
    const action = keys[event.key];
    if (action) { event.preventDefault(); action(); }
  });
  document.getElementById("show-keys")?.addEventListener("click", () => document.getElementById("keys-dialog").showModal());
  focusRow(Math.max(0, rows().findIndex((row) => row.dataset.gold === "")));
})();
