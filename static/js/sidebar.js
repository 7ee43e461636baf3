// The conversation list: open, new, rename, delete, import, and the drawer on narrow screens.
import { api, el, reportError, toast } from "./api.js";

export class Sidebar {
  constructor({ onOpen, onNew }) {
    this.list = document.getElementById("conversation-list");
    this.empty = document.getElementById("no-conversations");
    this.nav = document.getElementById("sidebar");
    this.toggle = document.getElementById("sidebar-toggle");
    this.onOpen = onOpen;
    this.list.addEventListener("click", (event) => {
      const link = event.target.closest("a[data-id]");
      if (!link || event.ctrlKey || event.metaKey) return;
      event.preventDefault();
      this.close();
      onOpen(link.dataset.id);
    });
    document.getElementById("new-conversation").addEventListener("click", () => { this.close(); onNew(); });
    document.getElementById("import-file").addEventListener("change", (event) => this.importFile(event.target));
    this.toggle.addEventListener("click", () => (this.nav.classList.contains("open") ? this.close() : this.openDrawer()));
  }

  openDrawer() {
    this.nav.classList.add("open");
    this.toggle.setAttribute("aria-expanded", "true");
    const first = this.nav.querySelector("button, a");
    if (first) first.focus();
  }

  close() {
    this.nav.classList.remove("open");
    this.toggle.setAttribute("aria-expanded", "false");
  }

  async refresh() {
    const data = await api("/list_conversations");
    this.render(data.conversations);
  }

  render(conversations) {
    const current = this.current;
    this.list.replaceChildren(...conversations.map((c) => this.item(c.conversation_id, c.title)));
    this.empty.hidden = conversations.length > 0;
    this.mark(current);
  }

  item(id, title) {
    return el("li", { "data-id": id },
      el("a", { href: `/?c=${encodeURIComponent(id)}`, "data-id": id, className: "conversation-link",
        text: title || "Untitled conversation", title: title || "Untitled conversation" }));
  }

  /** Put a conversation at the top (new, or just active) with its current title. */
  upsert(id, title) {
    const existing = this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (existing) existing.remove();
    this.list.prepend(this.item(id, title));
    this.empty.hidden = true;
    this.mark(id);
  }

  remove(id) {
    const existing = this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (existing) existing.remove();
    this.empty.hidden = this.list.children.length > 0;
  }

  mark(id) {
    this.current = id;
    for (const link of this.list.querySelectorAll("a[data-id]")) {
      if (link.dataset.id === id) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    }
  }

  async importFile(input) {
    const file = input.files[0];
    input.value = "";
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    try {
      const result = await api("/import_conversations", { method: "POST", body: form });
      await this.refresh();
      toast(result.message + (result.skipped ? ` ${result.skipped} skipped.` : ""), "info");
      if (result.conversations.length) this.onOpen(result.conversations[0].conversation_id);
    } catch (error) { reportError(error); }
  }
}
