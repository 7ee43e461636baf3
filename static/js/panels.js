// Side panels (statistics, summary): one open at a time, a close button, Esc closes.
const open = new Set();

export class SidePanel {
  constructor(panelId, toggleId, onOpen) {
    this.panel = document.getElementById(panelId);
    this.toggle = document.getElementById(toggleId);
    this.onOpen = onOpen;
    this.toggle.setAttribute("aria-expanded", "false");
    this.toggle.addEventListener("click", () => (this.panel.hidden ? this.show() : this.hide()));
    this.panel.querySelector(".panel-close").addEventListener("click", () => this.hide());
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.preventDefault(); this.hide(); }
    });
  }

  get isOpen() { return !this.panel.hidden; }

  show() {
    for (const other of open) if (other !== this) other.hide(false);
    open.add(this);
    this.panel.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    this.panel.querySelector("h2").setAttribute("tabindex", "-1");
    this.panel.querySelector("h2").focus();
    this.onOpen();
  }

  hide(refocus = true) {
    open.delete(this);
    if (this.panel.hidden) return;
    this.panel.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
    if (refocus) document.getElementById("conversation-menu-button").focus();
  }
}
