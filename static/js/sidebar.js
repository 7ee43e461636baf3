// The conversation list: grouped by last activity (Today, Yesterday, Previous 7 days, Older),
// filtered as you type; open, new, import, and the drawer on narrow screens.
import { api, el, reportError, toast } from "./api.js";

const DAY = 24 * 60 * 60 * 1000;
const GROUPS = ["Today", "Yesterday", "Previous 7 days", "Older"];

export function groupOf(updated, now = new Date()) {
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const at = new Date(updated).getTime();
  if (Number.isNaN(at) || at >= midnight) return GROUPS[0];
  if (at >= midnight - DAY) return GROUPS[1];
  return at >= midnight - 7 * DAY ? GROUPS[2] : GROUPS[3];
}

export class Sidebar {
  constructor({ onOpen, onNew }) {
    this.list = document.getElementById("conversation-list");
    this.empty = document.getElementById("no-conversations");
    this.noMatches = document.getElementById("no-matches");
    this.filter = document.getElementById("conversation-filter");
    this.nav = document.getElementById("sidebar");
    this.toggle = document.getElementById("sidebar-toggle");
    this.scrim = document.getElementById("scrim");
    this.onOpen = onOpen;
    this.items = [...this.list.querySelectorAll("li[data-id]")].map((li) => ({ id: li.dataset.id,
      title: li.textContent.trim(), updated: li.dataset.updated }));
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
    this.scrim.addEventListener("click", () => this.close());
    this.filter.addEventListener("input", () => this.render());
    this.render();
  }

  openDrawer() {
    this.nav.classList.add("open");
    this.scrim.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    this.filter.focus();
  }

  close() {
    if (!this.nav.classList.contains("open")) return;
    this.nav.classList.remove("open");
    this.scrim.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
  }

  /** Ctrl/Cmd+K: the filter box, with the drawer opened on narrow screens. */
  focusFilter() {
    if (getComputedStyle(this.toggle).display !== "none") this.openDrawer();
    this.filter.focus();
    this.filter.select();
  }

  async refresh() {
    const data = await api("/list_conversations");
    this.items = data.conversations.map((c) => ({ id: c.conversation_id, title: c.title, updated: c.updated_at }));
    this.render();
  }

  render() {
    const words = this.filter.value.trim().toLowerCase();
    const shown = this.items.filter((item) => !words || (item.title || "untitled conversation").toLowerCase().includes(words));
    const sections = [];
    for (const name of GROUPS) {
      const members = shown.filter((item) => groupOf(item.updated) === name);
      if (!members.length) continue;
      const heading = `group-${name.replace(/\W+/g, "-").toLowerCase()}`;
      sections.push(el("h2", { className: "group-heading", id: heading, text: name }),
        el("ul", { className: "group-list", "aria-labelledby": heading }, ...members.map((item) => this.item(item))));
    }
    this.list.replaceChildren(...sections);
    this.empty.hidden = this.items.length > 0;
    this.noMatches.hidden = !(this.items.length && !shown.length);
    this.mark(this.current);
  }

  item({ id, title }) {
    return el("li", { "data-id": id },
      el("a", { href: `/?c=${encodeURIComponent(id)}`, "data-id": id, className: "conversation-link",
        text: title || "Untitled conversation", title: title || "Untitled conversation" }));
  }

  /** Put a conversation at the top (new, or just active) with its current title. */
  upsert(id, title) {
    this.items = [{ id, title, updated: new Date().toISOString() }, ...this.items.filter((item) => item.id !== id)];
    this.current = id;
    this.render();
  }

  remove(id) {
    this.items = this.items.filter((item) => item.id !== id);
    this.render();
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
