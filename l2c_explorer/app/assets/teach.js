// Keyboard shortcuts of the "Teach it" panel: S same, D different, K skip, U undo, R relearn (not while
// typing), and a warning before leaving the page with a group name typed but not saved.
// Runs as gr.HTML js_on_load; registers one listener of each kind for the whole page.
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
  // A name typed into a group's name box counts as unsaved until Rename (or Enter) saves it; the server writes
  // every saved name into the run's files at once, so only typed-and-unsaved text can be lost.
  window.l2cUnsavedName = false;
  const renameBox = (t) => t && t.closest && t.closest("#discover-rename, #adapt-rename");
  document.addEventListener("input", (ev) => { if (renameBox(ev.target)) window.l2cUnsavedName = true; }, true);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && renameBox(ev.target)) window.l2cUnsavedName = false;
  }, true);
  document.addEventListener("click", (ev) => {
    if (ev.target && ev.target.closest && ev.target.closest("#discover-rename-btn, #adapt-rename-btn")) {
      window.l2cUnsavedName = false;
    }
  }, true);
  window.addEventListener("beforeunload", (ev) => {
    if (window.l2cUnsavedName) { ev.preventDefault(); ev.returnValue = ""; }
  });
}
