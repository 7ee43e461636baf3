// A menu button (WAI-ARIA menu pattern): opens on click or arrow keys, arrows move, Esc closes.
export class Menu {
  constructor(button, list) {
    this.button = button;
    this.list = list;
    button.addEventListener("click", () => (list.hidden ? this.open(0) : this.close()));
    button.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        this.open(event.key === "ArrowDown" ? 0 : -1);
      }
    });
    list.addEventListener("keydown", (event) => this.onKey(event));
    list.addEventListener("click", (event) => { if (event.target.closest("[role=menuitem]")) this.close(false); });
    document.addEventListener("pointerdown", (event) => {
      if (!list.hidden && !list.contains(event.target) && !button.contains(event.target)) this.close(false);
    });
  }

  items() {
    return [...this.list.querySelectorAll("[role=menuitem]")].filter((item) => !item.disabled
      && item.getAttribute("aria-disabled") !== "true");
  }

  open(index) {
    this.list.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    const items = this.items();
    if (items.length) items.at(index).focus();
  }

  close(refocus = true) {
    if (this.list.hidden) return;
    this.list.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus) this.button.focus();
  }

  onKey(event) {
    const items = this.items();
    const at = items.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      items[(moves[event.key] + items.length) % items.length].focus();
    } else if (event.key === "Escape" || event.key === "Tab") {
      if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); }
      this.close(event.key === "Escape");
    }
  }
}
