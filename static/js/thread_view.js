// The thread on screen: messages of the branch being shown, their icon actions (shown on hover
// and focus, always on touch), version arrows, the summary divider and each reply's breakdown.
import { el, toast } from "./api.js";
import { breakdownPanel } from "./breakdown.js";
import { icon, iconButton } from "./icons.js";
import { renderMarkdown } from "./markdown.js";
import { childrenOf } from "./thread.js";

export const AGENT_NAMES = { chat: "Chat", math: "Math", file: "File analysis", knowledge: "Knowledge", system: "System",
  few_shot: "Example", imported: "Imported" };
const SUGGESTIONS = ["Explain the token budget of this chat", "/math 2^10", "What is 65 x 3.11?"];

/** The empty state: what the page can do, with suggestions that fill the message box. */
export function emptyState(endpointConfigured, fill) {
  return el("div", { className: "empty-state" },
    el("h2", { text: "Start a conversation" }),
    el("p", { text: endpointConfigured ? "Ask anything, or drop a text file here to have it analysed. The meter above shows what the model will see."
      : "No model endpoint is configured: the math agent and uploads still work." }),
    el("ul", { "aria-label": "Suggestions" }, ...SUGGESTIONS.map((text) => el("li", {},
      el("button", { type: "button", text, onclick: () => fill(text) })))));
}

export function loadingState() {
  return el("div", { className: "loading-state", role: "status", "aria-label": "Loading the conversation" },
    el("div", { className: "skeleton short" }), el("div", { className: "skeleton" }), el("div", { className: "skeleton short" }));
}

export class ThreadView {
  /** `actions`: regenerate(message), send(text, editOf), openSummary(), goTo(id), showBranch(id), state(). */
  constructor(box, actions) {
    this.box = box;
    this.actions = actions;
    this.openBreakdowns = new Set();
  }

  render(path, summary) {
    const nodes = [];
    for (const message of path) {
      nodes.push(this.messageNode(message));
      if (summary && summary.last_message_id === message.message_id && message !== path[path.length - 1]) {
        nodes.push(this.divider());
      }
    }
    this.box.replaceChildren(...nodes);
  }

  divider() {
    return el("p", { className: "summary-divider", role: "separator", id: "summary-divider" },
      el("span", { text: "Above this line the model sees a summary, not the messages themselves" }),
      el("button", { type: "button", text: "Read the summary", onclick: () => this.actions.openSummary() }));
  }

  messageNode(message) {
    const isUser = message.role === "user";
    const node = el("article", { className: `message ${message.role}${message.finish_reason === "error" ? " error" : ""}`,
      "data-id": message.message_id, "aria-label": isUser ? "Your message" : "Assistant reply" });
    const head = el("div", { className: "message-head" }, el("span", { className: "who", text: isUser ? "You" : "Assistant" }));
    if (!isUser) head.append(agentBadge(message));
    if (message.created_at) head.append(el("time", { datetime: message.created_at, text: shortTime(message.created_at) }));
    const body = el("div", { className: "message-body" });
    fillBody(body, message);
    node.append(head, body, this.tools(message));
    if (this.openBreakdowns.has(message.message_id) && !message.streaming) {
      node.classList.add("breakdown-open");
      node.append(breakdownPanel(message, this.actions.state().messages, this.actions));
    }
    return node;
  }

  tools(message) {
    const state = this.actions.state();
    const bar = el("div", { className: "message-tools" });
    const siblings = childrenOf(state.messages, message.parent_message_id).filter((m) => m.role === message.role);
    if (siblings.length > 1) bar.append(this.branchNav(message, siblings));
    if (message.finish_reason === "stopped") bar.append(el("span", { className: "finish-note", text: "Stopped" }));
    if (message.finish_reason === "length") bar.append(el("span", { className: "finish-note", text: "Cut off at the reply limit" }));
    if (message.finish_reason === "error" && message.role === "assistant") {
      bar.append(el("span", { className: "finish-note error-note", text: "This reply failed. Regenerate it to try again." }));
    }
    const busy = state.streaming !== null;
    if (message.role === "assistant" && !message.streaming) {
      bar.append(copyIcon(message));
      if (message.parent_message_id && parentRole(state.messages, message) === "user") {
        bar.append(iconButton("regenerate", "Regenerate", () => this.actions.regenerate(message), { disabled: busy }));
      }
      if (message.meta && message.meta.context) bar.append(this.breakdownToggle(message));
    }
    if (message.role === "user") {
      bar.append(iconButton("edit", "Edit", (event) => this.edit(message, event.currentTarget), { disabled: busy }));
    }
    return bar;
  }

  breakdownToggle(message) {
    const open = this.openBreakdowns.has(message.message_id);
    return iconButton("context", "What went into this request", () => {
      if (open) this.openBreakdowns.delete(message.message_id); else this.openBreakdowns.add(message.message_id);
      const node = this.box.querySelector(`[data-id="${CSS.escape(message.message_id)}"]`);
      const fresh = this.messageNode(message);
      node.replaceWith(fresh);
      fresh.querySelector('[aria-label="What went into this request"]').focus();
    }, { "aria-expanded": String(open) });
  }

  branchNav(message, siblings) {
    const index = siblings.findIndex((m) => m.message_id === message.message_id);
    const go = (step) => {
      const target = siblings[index + step];
      if (!target || this.actions.state().streaming) return;
      this.actions.showBranch(target.message_id);
      const moved = this.box.querySelector(`[data-id="${CSS.escape(target.message_id)}"] .branch-nav button:last-child`);
      if (moved) moved.focus();
    };
    return el("span", { className: "branch-nav", role: "group", "aria-label": "Versions" },
      el("button", { type: "button", text: "‹", "aria-label": "Previous version", disabled: index === 0, onclick: () => go(-1) }),
      el("span", { text: `${index + 1}/${siblings.length}` }),
      el("button", { type: "button", text: "›", "aria-label": "Next version", disabled: index === siblings.length - 1,
        onclick: () => go(1) }));
  }

  /** Edit a user message in place; saving sends it as a new version (a sibling branch). */
  edit(message, button) {
    const node = button.closest(".message");
    const body = node.querySelector(".message-body");
    const box = el("textarea", { "aria-label": "Edit your message" });
    box.value = message.content;
    const restore = () => this.actions.rerender();
    const save = async () => {
      const text = box.value.trim();
      if (!text || text === message.content) { restore(); return; }
      if (await this.actions.send(text, message)) return;
      box.focus();
    };
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); save(); }
      if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); restore(); }
    });
    body.replaceChildren(el("div", { className: "edit-box" }, box,
      el("div", { className: "message-tools" },
        el("button", { type: "button", className: "primary", text: "Save and send", onclick: save }),
        el("button", { type: "button", className: "ghost", text: "Cancel", onclick: restore }))));
    box.focus();
  }
}

export function agentBadge(message) {
  const agent = message.agent || (message.meta && message.meta.routing && message.meta.routing.agent) || "chat";
  const routing = message.meta && message.meta.routing;
  const reason = routing ? `${routing.reasoning || routing.rule}${routing.execution_time_ms !== undefined
    ? ` (${routing.execution_time_ms} ms)` : ""}` : "Answered by this agent";
  return el("span", { className: "badge agent-badge", title: reason, "aria-label": `Agent: ${AGENT_NAMES[agent] || agent}. ${reason}`,
    text: AGENT_NAMES[agent] || agent, tabindex: "0" });
}

export function fillBody(body, message) {
  if (message.role === "user") body.textContent = message.content;
  else body.replaceChildren(renderMarkdown(message.content));
}

function copyIcon(message) {
  return iconButton("copy", "Copy reply", async (event) => {
    const button = event.currentTarget;
    try {
      await navigator.clipboard.writeText(message.content);
      button.replaceChildren(icon("check"));
      setTimeout(() => button.replaceChildren(icon("copy")), 1500);
    } catch (error) { toast("Copying is not allowed here; select the text instead."); }
  });
}

function parentRole(messages, message) {
  const parent = messages.find((m) => m.message_id === message.parent_message_id);
  return parent ? parent.role : null;
}

function shortTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
