// The per-turn chart: stacked prompt (summary part apart) and reply tokens for each reply on the
// branch, with the context window and the compaction threshold as lines; a tooltip per turn.
const SVG = "http://www.w3.org/2000/svg";
const BOX = { width: 480, height: 150, left: 42, right: 8, top: 10, bottom: 26 };
const MAX_TURNS = 30;

function node(tag, attributes = {}, text) {
  const made = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
  if (text !== undefined) made.textContent = text;
  return made;
}

function short(tokens) {
  return tokens >= 10000 ? `${Math.round(tokens / 1000)}k` : tokens >= 1000 ? `${(tokens / 1000).toFixed(1)}k` : String(tokens);
}

/** One turn's numbers from a stored reply's meta.usage. */
export function turnOf(usage) {
  const prompt = usage.prompt_tokens || 0;
  const summary = Math.min(usage.summary_tokens || 0, prompt);
  return { prompt, summary, reply: usage.completion_tokens || 0 };
}

export function describe(turn, number) {
  return `Turn ${number}: prompt ${turn.prompt.toLocaleString()} tokens`
    + `${turn.summary ? ` (summary ${turn.summary.toLocaleString()})` : ""}, reply ${turn.reply.toLocaleString()}`;
}

export class TurnChart {
  constructor(svg, tip) {
    this.svg = svg;
    this.tip = tip;
    this.turns = [];
    this.limits = { window: 0, threshold: 0 };
  }

  draw(turns, limits) {
    this.turns = turns.slice(-MAX_TURNS);
    this.limits = limits;
    const plotW = BOX.width - BOX.left - BOX.right;
    const plotH = BOX.height - BOX.top - BOX.bottom;
    const top = Math.max(limits.window, ...this.turns.map((t) => t.prompt + t.reply), 1);
    const y = (tokens) => BOX.top + plotH - (tokens / top) * plotH;
    this.svg.replaceChildren(...this.axes(y, plotW, top), ...this.lines(y, plotW, limits));
    const step = plotW / Math.max(this.turns.length, 8);
    this.turns.forEach((turn, index) => this.svg.append(this.bar(turn, index, step, y)));
    this.svg.append(node("text", { x: BOX.left + plotW / 2, y: BOX.height - 2, "text-anchor": "middle" }, "Turn"));
  }

  axes(y, plotW, top) {
    const bottom = y(0);
    const parts = [node("line", { class: "axis", x1: BOX.left, y1: BOX.top, x2: BOX.left, y2: bottom }),
      node("line", { class: "axis", x1: BOX.left, y1: bottom, x2: BOX.left + plotW, y2: bottom }),
      node("text", { x: 10, y: BOX.top + (bottom - BOX.top) / 2, "text-anchor": "middle",
        transform: `rotate(-90 10 ${BOX.top + (bottom - BOX.top) / 2})` }, "Tokens")];
    for (const value of [0, Math.round(top / 2), top]) {
      parts.push(node("text", { x: BOX.left - 4, y: y(value) + 3, "text-anchor": "end" }, short(value)));
    }
    return parts;
  }

  lines(y, plotW, limits) {
    const parts = [];
    for (const [value, kind, name] of [[limits.window, "window-line", "window"],
      [limits.threshold, "threshold-line", "compaction"]]) {
      if (!value) continue;
      parts.push(node("line", { class: kind, x1: BOX.left, y1: y(value), x2: BOX.left + plotW, y2: y(value) }));
      parts.push(node("text", { x: BOX.left + plotW - 2, y: y(value) - 2, "text-anchor": "end" }, name));
    }
    return parts;
  }

  bar(turn, index, step, y) {
    const x = BOX.left + index * step + step * 0.15;
    const width = step * 0.7;
    const number = index + 1;
    const label = describe(turn, number);
    const group = node("g", { class: "turn", tabindex: "0", role: "img", "aria-label": label });
    group.append(node("title", {}, label));
    group.append(node("path", { class: "hit", d: `M${x - step * 0.15} ${BOX.top}h${step}V${y(0)}h${-step}z` }));
    const own = turn.prompt - turn.summary;
    group.append(node("rect", { class: "prompt", x, y: y(own), width, height: y(0) - y(own) }));
    if (turn.summary) {
      group.append(node("rect", { class: "summary", x, y: y(turn.prompt), width, height: y(own) - y(turn.prompt) }));
    }
    group.append(node("rect", { class: "reply", x, y: y(turn.prompt + turn.reply), width,
      height: y(turn.prompt) - y(turn.prompt + turn.reply) }));
    if (this.turns.length <= 12 || number % 5 === 0) {
      group.append(node("text", { x: x + width / 2, y: y(0) + 11, "text-anchor": "middle" }, String(number)));
    }
    const show = () => { this.tip.textContent = label; this.tip.hidden = false; };
    const hide = () => { this.tip.hidden = true; };
    group.addEventListener("mouseenter", show);
    group.addEventListener("focus", show);
    group.addEventListener("mouseleave", hide);
    group.addEventListener("blur", hide);
    return group;
  }
}
