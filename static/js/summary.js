// The summary panel: read and edit the conversation's rolling summary, and pin facts that every
// request carries word for word (and every later compaction keeps).
import { api, el, reportError, toast } from "./api.js";
import { iconButton } from "./icons.js";
import { SidePanel } from "./panels.js";

export class SummaryPanel {
  constructor({ onChanged, goTo }) {
    this.side = new SidePanel("summary-panel", "summary-toggle", () => this.load());
    this.body = document.getElementById("summary-body");
    this.onChanged = onChanged;
    this.goTo = goTo;
    this.conversationId = null;
  }

  open(conversationId) {
    this.conversationId = conversationId;
    if (this.side.isOpen) this.load();
  }

  show() { if (!this.side.isOpen) this.side.show(); }

  async load() {
    if (!this.conversationId) {
      this.body.replaceChildren(el("p", { className: "hint", text: "Send a message first: a new conversation has no summary or pins yet." }));
      return;
    }
    try {
      this.render(await api(this.path("summary")));
    } catch (error) {
      this.body.replaceChildren(el("p", { className: "hint", text: error.message }));
    }
  }

  path(part) { return `/conversations/${encodeURIComponent(this.conversationId)}/${part}`; }

  render(data) {
    this.data = data;
    this.body.replaceChildren(el("h3", { text: "Summary" }), ...this.summaryPart(data.summary),
      el("h3", { text: "Pinned facts" }),
      el("p", { className: "hint", text: `Sent with every request and kept word for word by every compaction (${data.pinned_tokens} tokens).` }),
      this.pinList(data.pinned_facts), this.pinForm());
  }

  summaryPart(summary) {
    if (!summary) {
      return [el("p", { className: "hint", text: "No summary yet: the whole conversation still fits the model's window. "
        + "Older turns are summarised once it passes the compaction threshold." })];
    }
    const box = el("textarea", { id: "summary-text", "aria-label": "Summary the model sees" });
    box.value = summary.content;
    const save = el("button", { type: "button", className: "primary", text: "Save summary", onclick: () => this.saveSummary(box.value) });
    return [el("p", { className: "hint" }, `${summary.tokens} tokens; covers the thread up to `,
      el("button", { type: "button", className: "text-button", text: "this message", onclick: () => this.goTo(summary.last_message_id) }),
      ". An edited summary is used as written until the next compaction extends it."),
    box, el("div", { className: "row" }, save)];
  }

  pinList(facts) {
    if (!facts.length) return el("p", { className: "hint", text: "Nothing pinned yet." });
    return el("ul", { className: "pin-list", "aria-label": "Pinned facts" }, ...facts.map((fact, index) => el("li", {},
      el("span", { text: fact }),
      iconButton("close", `Unpin: ${fact.slice(0, 60)}`, () => this.savePins(facts.filter((_, at) => at !== index))))));
  }

  pinForm() {
    const input = el("input", { type: "text", id: "pin-input", maxlength: "500", placeholder: "e.g. We use Postgres 16",
      "aria-label": "New pinned fact" });
    const form = el("form", { className: "row", onsubmit: (event) => {
      event.preventDefault();
      if (input.value.trim()) this.savePins([...this.data.pinned_facts, input.value.trim()]);
    } }, input, el("button", { type: "submit", className: "primary", text: "Pin" }));
    return form;
  }

  async saveSummary(content) {
    try {
      await api(this.path("summary"), { method: "PUT", body: JSON.stringify({ content }) });
      toast("Summary saved: the next request uses it as written.", "info", 4);
      await this.load();
      this.onChanged();
    } catch (error) { reportError(error); }
  }

  async savePins(facts) {
    try {
      await api(this.path("pins"), { method: "PUT", body: JSON.stringify({ facts }) });
      await this.load();
      const input = document.getElementById("pin-input");
      if (input) input.focus();
      this.onChanged();
    } catch (error) { reportError(error); }
  }
}
