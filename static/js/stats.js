// The statistics panel: replies, average latency and tokens per agent for the open conversation.
import { api, el } from "./api.js";
import { SidePanel } from "./panels.js";

export class StatsPanel {
  constructor() {
    this.side = new SidePanel("stats-panel", "stats-toggle", () => this.refresh());
    this.body = document.getElementById("stats-body");
    this.conversationId = null;
  }

  open(conversationId) {
    this.conversationId = conversationId;
    this.refresh();
  }

  async refresh() {
    if (!this.side.isOpen) return;
    if (!this.conversationId) {
      this.body.replaceChildren(el("p", { className: "hint", text: "Open a conversation to see its statistics." }));
      return;
    }
    try {
      const stats = await api(`/stats/${encodeURIComponent(this.conversationId)}`);
      this.render(stats);
    } catch (error) {
      this.body.replaceChildren(el("p", { className: "hint", text: error.message }));
    }
  }

  render(stats) {
    const rows = stats.agents.map((row) => el("tr", {},
      el("th", { scope: "row", text: row.agent }),
      el("td", { text: String(row.replies) }),
      el("td", { text: row.avg_latency_ms === null ? "–" : `${(row.avg_latency_ms / 1000).toFixed(2)} s` }),
      el("td", { text: row.tokens.toLocaleString() })));
    this.body.replaceChildren(
      el("p", { text: `${stats.message_count} messages, ${stats.total_tokens.toLocaleString()} tokens stored` }),
      stats.summary_tokens ? el("p", { className: "hint", text: `Summary: ${stats.summary_tokens} tokens` }) : null,
      el("table", {},
        el("caption", { className: "visually-hidden", text: "Replies per agent" }),
        el("thead", {}, el("tr", {}, ...["Agent", "Replies", "Avg latency", "Tokens"].map(
          (name) => el("th", { scope: "col", text: name })))),
        el("tbody", {}, ...rows)),
      rows.length ? null : el("p", { className: "hint", text: "No replies yet." }));
  }
}
