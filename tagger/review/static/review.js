// The review page's keyboard: digits/-/= toggle topics, Enter confirms, s skips, u undoes.
// Text on the page is never parsed as HTML here: status messages go in through textContent.
(function () {
  "use strict";
  const csrfMeta = document.querySelector('meta[name="csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const article = document.getElementById("article");
  const form = document.getElementById("decision");
  const status = document.getElementById("status");
  const boxes = Array.from(document.querySelectorAll("input.topic"));
  let busy = false;

  function say(text, isError) {
    if (status) { status.textContent = text; status.className = isError ? "error" : ""; }
  }

  async function post(url, body) {
    if (busy) return;
    busy = true;
    try {
      const r = await fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
      });
      if (r.ok) { window.location.reload(); return; }
      let message = r.status + "";
      try { message = (await r.json()).error || message; } catch (e) { /* not JSON */ }
      say(message, true);
    } catch (e) {
      say(String(e), true);
    } finally {
      busy = false;
    }
  }

  function confirm() {
    if (!article) return;
    post("/api/decisions", { id: article.dataset.id, topics: boxes.filter(b => b.checked).map(b => b.value) });
  }

  function toggle(box) {
    box.checked = !box.checked;
    box.closest("li").classList.toggle("chosen", box.checked);
  }

  if (form) form.addEventListener("submit", e => { e.preventDefault(); confirm(); });
  boxes.forEach(b => b.addEventListener("change", () => b.closest("li").classList.toggle("chosen", b.checked)));
  const skip = document.getElementById("skip");
  if (skip) skip.addEventListener("click", () => article && post("/api/skip", { id: article.dataset.id }));
  const undo = document.getElementById("undo");
  if (undo) undo.addEventListener("click", () => post("/api/undo", {}));

  document.addEventListener("keydown", e => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const box = boxes.find(b => b.dataset.key === e.key);
    if (box) { e.preventDefault(); toggle(box); return; }
    if (e.key === "Enter") { e.preventDefault(); confirm(); }
    else if (e.key === "s" || e.key === "S") { e.preventDefault(); if (article) post("/api/skip", { id: article.dataset.id }); }
    else if (e.key === "u" || e.key === "U") { e.preventDefault(); post("/api/undo", {}); }
  });
  document.body.dataset.keys = "ready";  // keys work from here on (tests wait for this)
})();
