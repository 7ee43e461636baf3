// The token meter: what the next request will carry for the branch on screen (system prompt with
// pinned facts, summary, the verbatim tail, the draft being typed), against the model's window.
// The server counts the stored parts (GET .../budget), the draft is counted as it is typed.
import { api } from "./api.js";

const DRAFT_DELAY_MS = 250;

export class TokenMeter {
  constructor(config, onBudget) {
    this.budget = { window: Number(config.maxTokens) || 0, reply_tokens: Number(config.replyTokens) || 0,
      ratio: 1, compact_at: 0.8, system_tokens: 0, pinned_tokens: 0, summary_tokens: 0, verbatim_tokens: 0,
      verbatim_count: 0, format_tokens: 0 };
    this.draft = 0;
    this.onBudget = onBudget;
    this.section = document.getElementById("meter");
    this.label = document.getElementById("meter-label");
    this.reserve = document.getElementById("meter-reserve");
    this.bar = document.getElementById("meter-bar");
    this.warn = document.getElementById("meter-warn");
    this.badge = document.getElementById("meter-summary");
    this.draftLabel = document.getElementById("draft-tokens");
    this.fills = ["system", "summary", "draft"].reduce((all, name) => ({ ...all,
      [name]: document.getElementById(`meter-${name}-fill`) }), { verbatim: document.getElementById("meter-fill") });
    this.threshold = document.getElementById("meter-threshold");
    this.draftSeq = 0;
  }

  /** Ask the server what the next request carries before the draft (conversationId null: a new chat). */
  async refresh(conversationId, leafId, model) {
    const query = new URLSearchParams();
    if (leafId) query.set("leaf", leafId);
    if (model) query.set("model", model);
    const path = conversationId ? `/conversations/${encodeURIComponent(conversationId)}/budget` : "/budget";
    try {
      this.budget = await api(`${path}?${query}`);
    } catch (error) { return; } // the meter keeps its last figures; the page reports connection trouble itself
    this.section.dataset.leaf = leafId || "";
    this.show();
    if (this.onBudget) this.onBudget(this.budget);
  }

  /** The draft changed: count it after a pause in typing (empty counts as nothing at once). */
  typed(text) {
    clearTimeout(this.draftTimer);
    const seq = ++this.draftSeq;
    if (!text.trim()) { this.draft = 0; this.show(); return; }
    this.draftTimer = setTimeout(async () => {
      try {
        const counted = await api("/count_tokens", { method: "POST", body: JSON.stringify({ text }) });
        if (seq === this.draftSeq) { this.draft = counted.tokens; this.show(); }
      } catch (error) { /* an uncounted draft leaves the meter as it was */ }
    }, DRAFT_DELAY_MS);
  }

  /** Counted tokens the next request carries, and what would not fit. */
  figures() {
    const b = this.budget;
    const fixed = b.system_tokens + b.pinned_tokens + b.format_tokens;
    const counted = fixed + b.summary_tokens + b.verbatim_tokens + this.draft;
    const room = b.prompt_room || Math.max(0, b.window - b.reply_tokens);
    return { counted, room, fixed, tooLong: this.draft > 0 && fixed + this.draft > room,
      compacts: this.draft > 0 && counted > b.compact_at * room, over: counted > room };
  }

  show() {
    const b = this.budget;
    const f = this.figures();
    const scale = (tokens) => Math.ceil(tokens * (b.ratio || 1));
    const used = scale(f.counted);
    const percent = b.window ? Math.round((used / b.window) * 100) : 0;
    this.label.textContent = `Next request: ${used.toLocaleString()} / ${b.window.toLocaleString()} tokens (${percent}%)`;
    this.reserve.textContent = `· ${b.reply_tokens.toLocaleString()} kept for the reply`;
    this.bar.setAttribute("aria-valuenow", String(Math.min(used, b.window)));
    this.bar.setAttribute("aria-valuemax", String(b.window));
    this.bar.setAttribute("aria-valuetext", `${used} of ${b.window} tokens: system ${scale(f.fixed)}, summary `
      + `${scale(b.summary_tokens)}, messages ${scale(b.verbatim_tokens)}, your draft ${scale(this.draft)}`);
    const width = (tokens) => `${b.window ? Math.min(100, (scale(tokens) / b.window) * 100) : 0}%`;
    this.fills.system.style.width = width(f.fixed);
    this.fills.summary.style.width = width(b.summary_tokens);
    this.fills.verbatim.style.width = width(b.verbatim_tokens);
    this.fills.draft.style.width = width(this.draft);
    this.threshold.style.left = width(b.compact_at * f.room);
    this.badge.hidden = !b.summary_tokens;
    this.draftLabel.textContent = this.draft ? `${scale(this.draft).toLocaleString()} tokens` : "";
    this.warnAbout(f);
  }

  warnAbout(f) {
    const tooLong = f.tooLong;
    this.section.classList.toggle("over", tooLong);
    document.getElementById("composer").classList.toggle("over", tooLong);
    this.warn.classList.toggle("danger", tooLong);
    if (tooLong) {
      this.warn.textContent = `Too long to send: this message needs ${this.draft.toLocaleString()} tokens but only `
        + `${Math.max(0, f.room - f.fixed).toLocaleString()} fit. Shorten it, or attach it as a file.`;
    } else if (f.compacts) {
      this.warn.textContent = "Sending this passes the compaction threshold: older turns will be folded into the summary.";
    } else {
      this.warn.textContent = "";
    }
  }
}
