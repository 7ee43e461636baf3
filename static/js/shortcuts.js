// Keyboard shortcuts (listed in the '?' help dialog): Ctrl/Cmd+K filter, Ctrl/Cmd+Shift+O new chat,
// Esc stop, Up arrow in an empty message box edits your last message, ? shows the list.
function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

export function installShortcuts({ search, newChat, stop, editLast, input }) {
  const help = document.getElementById("help-dialog");
  const showHelp = () => { if (!help.open) help.showModal(); };
  document.getElementById("help-button").addEventListener("click", showHelp);
  document.addEventListener("keydown", (event) => {
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (mod && !event.shiftKey && key === "k") { event.preventDefault(); search(); }
    else if (mod && event.shiftKey && key === "o") { event.preventDefault(); newChat(); }
    else if (event.key === "Escape" && !event.defaultPrevented) stop();
    else if (event.key === "?" && !mod && !typing(event.target)) { event.preventDefault(); showHelp(); }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowUp" && !input.value && !event.shiftKey && !event.altKey) {
      if (editLast()) event.preventDefault();
    }
  });
}
