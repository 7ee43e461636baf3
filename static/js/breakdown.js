// "What went into this request": a reply's stored meta.context (computed once by the server when
// the reply was made), as a table and one bar against the model's window.
import { el } from "./api.js";
import { pathTo } from "./thread.js";

const PARTS = [
  ["system", "System prompt"], ["pinned", "Pinned facts"], ["summary", "Summary"],
  ["verbatim", "Earlier messages, verbatim"], ["new_message", "New message"], ["format", "Chat format overhead"],
];

function number(value) { return Number(value || 0).toLocaleString(); }

/** The breakdown panel for `reply`; `goTo(id)` scrolls to a message, `openSummary()` opens the summary. */
export function breakdownPanel(reply, messages, { goTo, openSummary }) {
  const context = reply.meta && reply.meta.context;
  if (!context) return el("div", { className: "breakdown", text: "No breakdown was stored for this reply." });
  const path = pathTo(messages, reply.message_id);
  const question = path[path.length - 2];
  const verbatim = path.slice(Math.max(0, path.length - 2 - context.verbatim_count), path.length - 2);
  const rows = PARTS.filter(([key]) => key !== "pinned" || context.parts.pinned).map(([key, name]) =>
    el("tr", {}, el("th", { scope: "row" }, el("span", { className: `swatch part-${key.replace("_message", "")}` }), name,
      detail(key, context, verbatim, question, { goTo, openSummary })),
    el("td", { className: "num", text: number(context.parts[key]) })));
  return el("div", { className: "breakdown", role: "region", "aria-label": "What went into this request" },
    bar(context),
    el("table", {},
      el("caption", { className: "visually-hidden", text: "Tokens per part of the request" }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Part" }), el("th", { scope: "col", className: "num", text: "Tokens" }))),
      el("tbody", {}, ...rows),
      el("tfoot", {},
        el("tr", {}, el("th", { scope: "row", text: "Prompt (our count)" }), el("td", { className: "num", text: number(context.prompt_tokens) })),
        el("tr", {}, el("th", { scope: "row", text: "Kept for the reply" }), el("td", { className: "num", text: number(context.reply_reserve) })),
        el("tr", {}, el("th", { scope: "row", text: "Context window" }), el("td", { className: "num", text: number(context.window) })))),
    el("p", { className: "hint", text: calibration(context) }));
}

function detail(key, context, verbatim, question, { goTo, openSummary }) {
  if (key === "summary" && context.summary_through) {
    return el("span", {}, " (covers the thread up to ",
      el("button", { type: "button", className: "text-button", text: "this message",
        onclick: () => goTo(context.summary_through) }), "; ",
      el("button", { type: "button", className: "text-button", text: "read it", onclick: openSummary }), ")");
  }
  if (key === "verbatim" && verbatim.length) {
    return el("ol", {}, ...verbatim.map((m) => el("li", {}, el("button", { type: "button", className: "text-button",
      text: `${m.role === "user" ? "You" : "Assistant"}: ${m.content.slice(0, 40)}${m.content.length > 40 ? "…" : ""}${m.tokens ? ` (${number(m.tokens)})` : ""}`,
      onclick: () => goTo(m.message_id) }))));
  }
  if (key === "new_message" && question) {
    return el("span", {}, " (", el("button", { type: "button", className: "text-button", text: "show",
      onclick: () => goTo(question.message_id) }), ")");
  }
  return null;
}

function bar(context) {
  const window = context.window || 1;
  const ratio = context.ratio || 1;
  const part = (key, tokens) => {
    const span = el("span", { className: `part-${key}`, title: `${key}: ${number(tokens)}` });
    span.style.width = `${Math.min(100, ((tokens * ratio) / window) * 100)}%`;
    return span;
  };
  const reserve = el("span", { className: "part-reserve", title: `reply reserve: ${number(context.reply_reserve)}` });
  reserve.style.width = `${(context.reply_reserve / window) * 100}%`;
  reserve.style.marginLeft = "auto";
  return el("div", { className: "breakdown-bar", "aria-hidden": "true" },
    ...PARTS.map(([key]) => part(key.replace("_message", ""), context.parts[key] || 0)), reserve);
}

function calibration(context) {
  const ratio = `Calibration ratio ${Number(context.ratio || 1).toFixed(2)} for ${context.model || "this model"} `
    + "(the server's count / ours, as of this reply: budgets scale our counts by it).";
  const reported = context.reported_prompt_tokens;
  return reported ? `${ratio} The server reported ${number(reported)} prompt tokens; we counted ${number(context.prompt_tokens)}.`
    : `${ratio} The server did not report its own count for this request.`;
}
