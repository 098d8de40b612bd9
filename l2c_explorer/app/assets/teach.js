// Keyboard shortcuts of the "Teach it" panel: S same, D different, K skip, U undo, R relearn (not while
// typing).
// Runs as gr.HTML js_on_load; registers one listener for the whole page.
if (!window.l2cTeachKeys) {
  window.l2cTeachKeys = true;
  const keys = { s: "discover-teach-same", d: "discover-teach-different", k: "discover-teach-skip",
                 u: "discover-teach-undo", r: "discover-teach-relearn" };
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    const id = keys[(ev.key || "").toLowerCase()];
    const button = id && document.getElementById(id);
    if (button && !button.disabled) { ev.preventDefault(); button.click(); }
  });
}
