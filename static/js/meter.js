// The token meter: how full the model's context was for the last reply (the summary's share in
// its own colour), and a small chart of prompt and reply tokens per turn.
const SVG = "http://www.w3.org/2000/svg";

export class TokenMeter {
  constructor(config) {
    this.window = Number(config.maxTokens) || 0;
    this.label = document.getElementById("meter-label");
    this.bar = document.getElementById("meter-bar");
    this.fill = document.getElementById("meter-fill");
    this.summaryFill = document.getElementById("meter-summary-fill");
    this.summaryBadge = document.getElementById("meter-summary");
    this.chart = document.getElementById("turn-chart");
    this.turns = [];
  }

  /** Turns from stored replies' meta.usage (after a load), newest last. */
  reset(messages, summaryActive) {
    this.turns = messages.filter((m) => m.role === "assistant" && m.meta && m.meta.usage).map((m) => m.meta.usage);
    const last = this.turns[this.turns.length - 1];
    this.show(last ? last.prompt_tokens : 0, last ? last.summary_tokens : 0, summaryActive, this.window);
    this.draw();
  }

  /** A token_usage event. */
  update(usage) {
    this.turns.push({ prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens,
      summary_tokens: usage.summary_tokens });
    this.show(usage.prompt_tokens, usage.summary_tokens, usage.summary_tokens > 0, usage.context_window || this.window);
    this.draw();
  }

  show(prompt, summary, summaryActive, window) {
    this.window = window || this.window;
    const used = Math.min(prompt || 0, this.window);
    const percent = this.window ? Math.round((used / this.window) * 100) : 0;
    this.label.textContent = `Context: ${used.toLocaleString()} / ${this.window.toLocaleString()} tokens (${percent}%)`;
    this.bar.setAttribute("aria-valuenow", String(used));
    this.bar.setAttribute("aria-valuemax", String(this.window));
    this.bar.setAttribute("aria-valuetext", `${percent}% of the context window`);
    const summaryShare = this.window ? Math.min(summary || 0, used) / this.window : 0;
    this.summaryFill.style.width = `${summaryShare * 100}%`;
    this.fill.style.width = `${(this.window ? used / this.window : 0) * 100 - summaryShare * 100}%`;
    this.summaryBadge.hidden = !summaryActive;
  }

  draw() {
    const turns = this.turns.slice(-30);
    this.chart.replaceChildren();
    if (!turns.length) return;
    const top = Math.max(...turns.map((t) => (t.prompt_tokens || 0) + (t.completion_tokens || 0)), 1);
    const width = 240 / 30;
    turns.forEach((turn, index) => {
      const prompt = ((turn.prompt_tokens || 0) / top) * 40;
      const reply = ((turn.completion_tokens || 0) / top) * 40;
      const x = index * width;
      this.chart.append(rect(x, 40 - prompt - reply, width - 1, reply, "reply",
        `Turn ${index + 1}: ${turn.completion_tokens} reply tokens`));
      this.chart.append(rect(x, 40 - prompt, width - 1, prompt, "prompt",
        `Turn ${index + 1}: ${turn.prompt_tokens} prompt tokens`));
    });
  }
}

function rect(x, y, width, height, kind, title) {
  const node = document.createElementNS(SVG, "rect");
  for (const [name, value] of Object.entries({ x, y, width, height: Math.max(height, 0) })) {
    node.setAttribute(name, String(value));
  }
  node.setAttribute("class", kind);
  const tip = document.createElementNS(SVG, "title");
  tip.textContent = title;
  node.append(tip);
  return node;
}
