// Render math in every .math element, in KaTeX's safe mode (model text never runs script or opens links).
(function () {
  "use strict";
  function render(root) {
    if (!window.renderMathInElement) return;
    root.querySelectorAll(".math").forEach((el) => window.renderMathInElement(el, {
      delimiters: [
        { left: "$$", right: "$$", display: true }, { left: "\\[", right: "\\]", display: true },
        { left: "\\(", right: "\\)", display: false }, { left: "$", right: "$", display: false },
      ],
      throwOnError: false, trust: false, strict: "ignore",
    }));
  }
  window.addEventListener("load", () => render(document));
  document.addEventListener("htmx:afterSwap", (event) => render(event.detail.elt.parentNode || document));
  document.querySelectorAll("img.zoomable").forEach((img) => img.addEventListener("click", () => img.classList.toggle("zoomed")));
})();
