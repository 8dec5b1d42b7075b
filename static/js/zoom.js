// Image zoom: a click on an image or the key `z` opens it in a modal dialog (the page underneath
// is inert: nothing there can be clicked or labelled); `z`, Escape or a click closes it.
(function () {
  "use strict";
  const images = Array.from(document.querySelectorAll("img.zoomable"));
  if (!images.length) return;
  const dialog = document.createElement("dialog");
  dialog.id = "zoom-dialog";
  dialog.className = "zoom";
  const big = document.createElement("img");
  dialog.appendChild(big);
  document.body.appendChild(dialog);

  function open(img) {
    big.src = img.src;
    big.alt = img.alt;
    dialog.showModal();
  }
  images.forEach((img) => img.addEventListener("click", () => open(img)));
  dialog.addEventListener("click", () => dialog.close()); // the backdrop and the image alike
  document.addEventListener("keydown", (event) => {
    if (event.key !== "z" || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea") return;
    if (dialog.open) dialog.close();
    else if (!document.querySelector("dialog[open]")) open(images[0]);
    else return;
    event.preventDefault();
    event.stopImmediatePropagation(); // the labelling keys never see it
  }, true);
})();
