// Render math in every .math element, in KaTeX's safe mode (trust off: model text never runs
// script or opens links). Delimited math ($…$, \(…\), \[…\]) goes through auto-render; models
// also write bare LaTeX (`The answer is \boxed{86}.`), so each whitespace-separated token that
// holds a `\command` is rendered on its own, and left as typed when KaTeX cannot parse it.
(function () {
  "use strict";
  const OPTIONS = { throwOnError: false, trust: false, strict: "ignore", maxExpand: 1000 };
  // KaTeX draws commands it will not run (\href with trust off) as their names in errorColor and
  // drops their arguments; a bare token with one is kept as typed, so nothing the model wrote is hidden.
  const REFUSED = "#cc0001";
  const SKIP = new Set(["SCRIPT", "STYLE", "TEXTAREA", "CODE", "PRE"]);

  // Tokens: a run without whitespace outside braces, so `\boxed{0 or 2}` is one token.
  function bareTokens(text) {
    const found = [];
    let i = 0;
    while (i < text.length) {
      if (/\s/.test(text[i])) { i += 1; continue; }
      const start = i;
      let depth = 0;
      while (i < text.length && (depth > 0 || !/\s/.test(text[i]))) {
        if (text[i] === "\\") i += 1; // an escaped character never opens or closes a group
        else if (text[i] === "{") depth += 1;
        else if (text[i] === "}") depth -= 1;
        if (depth < 0) break;
        i += 1;
      }
      let end = Math.min(i, text.length);
      if (depth !== 0) { i = end + 1; continue; } // unbalanced (a cut step): keep it as text
      // Sentence punctuation after the math stays text: "is \boxed{7}." renders "\boxed{7}".
      while (end > start && /[.,;:!?]/.test(text[end - 1]) && text[end - 2] !== "\\") end -= 1;
      const token = text.slice(start, end);
      if (/\\[a-zA-Z]+/.test(token)) found.push([start, end]);
      i = Math.max(i, start + 1);
    }
    return found;
  }

  function renderBare(node) {
    const text = node.nodeValue;
    const tokens = bareTokens(text);
    if (!tokens.length) return;
    const parts = document.createDocumentFragment();
    let last = 0;
    tokens.forEach(([start, end]) => {
      const span = document.createElement("span");
      try {
        window.katex.render(text.slice(start, end), span, { ...OPTIONS, throwOnError: true, errorColor: REFUSED });
        if (span.innerHTML.includes(REFUSED)) return;
      } catch (error) {
        return; // not LaTeX KaTeX knows: the token stays in the text as typed
      }
      parts.appendChild(document.createTextNode(text.slice(last, start)));
      span.className = "bare-math";
      parts.appendChild(span);
      last = end;
    });
    if (last === 0) return;
    parts.appendChild(document.createTextNode(text.slice(last)));
    node.replaceWith(parts);
  }

  function textNodes(root) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
      acceptNode: (node) => {
        for (let el = node.parentElement; el && el !== root.parentElement; el = el.parentElement) {
          if (SKIP.has(el.tagName) || el.classList.contains("katex")) return NodeFilter.FILTER_REJECT;
        }
        return node.nodeValue.includes("\\") ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT;
      },
    });
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    return nodes;
  }

  function renderOne(el) {
    if (el.dataset.mathDone) return;
    el.dataset.mathDone = "1";
    window.renderMathInElement(el, {
      delimiters: [
        { left: "$$", right: "$$", display: true }, { left: "\\[", right: "\\]", display: true },
        { left: "\\(", right: "\\)", display: false }, { left: "$", right: "$", display: false },
      ],
      ...OPTIONS,
    });
    textNodes(el).forEach(renderBare);
  }

  function render(root) {
    if (!window.renderMathInElement || !window.katex) return;
    if (root.classList?.contains("math")) renderOne(root);
    root.querySelectorAll(".math").forEach(renderOne);
  }
  window.stepmarkMath = { render };
  if (document.readyState === "complete") render(document);
  else window.addEventListener("load", () => render(document));
  document.addEventListener("htmx:afterSwap", (event) => render(event.detail.elt.parentNode || document));
})();
