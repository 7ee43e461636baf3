// The chat page: one conversation's thread, live replies over Socket.IO, branches, and the
// panels around it. Server state wins: after a reconnect the open conversation is reloaded.
/* global io */
import { api, el, reportError, toast } from "./api.js";
import { copyButton, renderMarkdown } from "./markdown.js";
import { TokenMeter } from "./meter.js";
import { Sidebar } from "./sidebar.js";
import { StatsPanel } from "./stats.js";
import { childrenOf, newestLeaf, newestLeafUnder, pathTo } from "./thread.js";
import { Uploader } from "./uploads.js";

const config = document.getElementById("page-config").dataset;
const $ = (id) => document.getElementById(id);
const messagesBox = $("messages");
const input = $("message-input");
const AGENT_NAMES = { chat: "Chat", math: "Math", file: "File analysis", knowledge: "Knowledge", system: "System",
  few_shot: "Example", imported: "Imported" };

const state = {
  conversationId: null, title: "", messages: [], leaf: null, summary: null,
  streaming: null, // the reply being generated: {message_id}
  early: new Map(), // chunks that arrived before the send's acknowledgement
  sending: false, // a send_message awaits its acknowledgement
};

const meter = new TokenMeter(config);
const stats = new StatsPanel();
const sidebar = new Sidebar({ onOpen: (id) => openConversation(id).catch(reportError), onNew: newConversation });
const uploader = new Uploader(config, {
  currentConversation: () => state.conversationId,
  onAccepted: (job) => {
    if (job.conversation_id !== state.conversationId) openConversation(job.conversation_id).catch(reportError);
    sidebar.upsert(job.conversation_id, state.conversationId === job.conversation_id ? state.title : job.file_name);
  },
  onFinished: (event) => {
    if (event.conversation_id === state.conversationId) openConversation(state.conversationId).catch(reportError);
  },
});
const socket = io({ transports: ["websocket", "polling"], reconnectionDelayMax: 2000 });

// -- conversations -----------------------------------------------------------------------------

async function openConversation(id, focusMessageId) {
  const data = await api(`/load_conversation/${encodeURIComponent(id)}`);
  state.conversationId = id;
  state.title = data.title;
  state.messages = data.conversation;
  state.summary = data.summary;
  state.leaf = focusMessageId ? newestLeafUnder(state.messages, focusMessageId) : newestLeaf(state.messages);
  state.streaming = null;
  const joined = await emit("join_conversation", { conversation_id: id });
  if (joined.ok && joined.generating) resumeStreaming(joined.generating);
  showConversationChrome();
  render();
  meter.reset(pathTo(state.messages, state.leaf), Boolean(state.summary));
  stats.open(id);
  pickModelOf(pathTo(state.messages, state.leaf));
  if (focusMessageId) {
    const node = messagesBox.querySelector(`[data-id="${CSS.escape(focusMessageId)}"]`);
    if (node) { node.classList.add("found"); node.scrollIntoView({ block: "center" }); }
  } else {
    messagesBox.scrollTop = messagesBox.scrollHeight;
  }
  history.replaceState(null, "", `/?c=${encodeURIComponent(id)}`);
}

function newConversation() {
  Object.assign(state, { conversationId: null, title: "", messages: [], leaf: null, summary: null, streaming: null });
  showConversationChrome();
  render();
  meter.reset([], false);
  stats.open(null);
  history.replaceState(null, "", "/");
  input.focus();
}

function showConversationChrome() {
  const id = state.conversationId;
  $("conversation-title").textContent = id ? state.title || "Untitled conversation" : "New conversation";
  document.title = id ? `${state.title || "Untitled conversation"} – Chat Application` : "Chat Application";
  for (const name of ["rename-conversation", "delete-conversation"]) $(name).disabled = !id;
  for (const [name, format] of [["export-json", "json"], ["export-md", "md"]]) {
    const link = $(name);
    if (id) {
      link.href = `/export/${encodeURIComponent(id)}?format=${format}`;
      link.removeAttribute("aria-disabled");
    } else {
      link.removeAttribute("href");
      link.setAttribute("aria-disabled", "true");
    }
  }
  sidebar.mark(id);
  setBusy(Boolean(state.streaming));
}

$("rename-conversation").addEventListener("click", async () => {
  const title = window.prompt("New title for this conversation", state.title || "");
  if (title === null || !title.trim()) return;
  try {
    const result = await api(`/conversations/${encodeURIComponent(state.conversationId)}`,
      { method: "PATCH", body: JSON.stringify({ title }) });
    state.title = result.title;
    sidebar.upsert(state.conversationId, result.title);
    showConversationChrome();
  } catch (error) { reportError(error); }
});

$("delete-conversation").addEventListener("click", async () => {
  if (!window.confirm("Delete this conversation and all its messages? This cannot be undone.")) return;
  try {
    await api(`/conversations/${encodeURIComponent(state.conversationId)}`, { method: "DELETE" });
    sidebar.remove(state.conversationId);
    newConversation();
    toast("Conversation deleted.", "info", 4);
  } catch (error) { reportError(error); }
});

// -- rendering ---------------------------------------------------------------------------------

function render() {
  const path = pathTo(state.messages, state.leaf);
  if (state.conversationId && state.leaf && !state.streaming) { // Markdown export: the thread on screen
    $("export-md").href = `/export/${encodeURIComponent(state.conversationId)}?format=md&leaf=${encodeURIComponent(state.leaf)}`;
  }
  if (!path.length) {
    messagesBox.replaceChildren(el("p", { className: "hint empty-hint",
      text: "Ask anything. Try “/math 2^10”, “What is 65 x 3.11?”, or drop a text file here." }));
    return;
  }
  const nodes = [];
  for (const message of path) {
    nodes.push(messageNode(message));
    if (state.summary && state.summary.last_message_id === message.message_id && message !== path[path.length - 1]) {
      nodes.push(el("p", { className: "summary-divider", role: "separator",
        text: "Above this line the model sees a summary, not the messages themselves" }));
    }
  }
  messagesBox.replaceChildren(...nodes);
}

function messageNode(message) {
  const isUser = message.role === "user";
  const node = el("article", { className: `message ${message.role}${message.finish_reason === "error" ? " error" : ""}`,
    "data-id": message.message_id, "aria-label": isUser ? "Your message" : "Assistant reply" });
  const head = el("div", { className: "message-head" }, el("span", { className: "who", text: isUser ? "You" : "Assistant" }));
  if (!isUser) head.append(agentBadge(message));
  if (message.created_at) head.append(el("time", { datetime: message.created_at, text: shortTime(message.created_at) }));
  const body = el("div", { className: "message-body" });
  fillBody(body, message);
  node.append(head, body, tools(message));
  return node;
}

function agentBadge(message) {
  const agent = message.agent || (message.meta && message.meta.routing && message.meta.routing.agent) || "chat";
  const routing = message.meta && message.meta.routing;
  const reason = routing ? `${routing.reasoning || routing.rule}${routing.execution_time_ms !== undefined
    ? ` (${routing.execution_time_ms} ms)` : ""}` : "Answered by this agent";
  return el("span", { className: "badge agent-badge", title: reason, "aria-label": `Agent: ${AGENT_NAMES[agent] || agent}. ${reason}`,
    text: AGENT_NAMES[agent] || agent, tabindex: "0" });
}

function fillBody(body, message) {
  if (message.role === "user") body.textContent = message.content;
  else body.replaceChildren(renderMarkdown(message.content));
}

function tools(message) {
  const bar = el("div", { className: "message-tools" });
  const siblings = childrenOf(state.messages, message.parent_message_id).filter((m) => m.role === message.role);
  if (siblings.length > 1) bar.append(branchNav(message, siblings));
  if (message.finish_reason === "stopped") bar.append(el("span", { className: "finish-note", text: "Stopped" }));
  if (message.finish_reason === "length") bar.append(el("span", { className: "finish-note", text: "Cut off at the reply limit" }));
  const streaming = state.streaming !== null;
  if (message.role === "assistant" && !message.streaming) {
    const copy = copyButton(() => message.content, "Copy");
    copy.className = "";
    copy.setAttribute("aria-label", "Copy reply");
    bar.append(copy);
    if (message.parent_message_id && parentRole(message) === "user") {
      bar.append(el("button", { type: "button", text: "Regenerate", disabled: streaming,
        onclick: () => regenerate(message) }));
    }
  }
  if (message.role === "user") {
    bar.append(el("button", { type: "button", text: "Edit", disabled: streaming, onclick: (e) => editMessage(message, e.currentTarget) }));
  }
  return bar;
}

function parentRole(message) {
  const parent = state.messages.find((m) => m.message_id === message.parent_message_id);
  return parent ? parent.role : null;
}

function branchNav(message, siblings) {
  const index = siblings.findIndex((m) => m.message_id === message.message_id);
  const go = (step) => {
    const target = siblings[index + step];
    if (!target || state.streaming) return;
    state.leaf = newestLeafUnder(state.messages, target.message_id);
    render();
    meter.reset(pathTo(state.messages, state.leaf), Boolean(state.summary));
    const moved = messagesBox.querySelector(`[data-id="${CSS.escape(target.message_id)}"] .branch-nav button:last-child`);
    if (moved) moved.focus();
  };
  return el("span", { className: "branch-nav", role: "group", "aria-label": "Versions" },
    el("button", { type: "button", text: "‹", "aria-label": "Previous version", disabled: index === 0, onclick: () => go(-1) }),
    el("span", { text: `${index + 1}/${siblings.length}` }),
    el("button", { type: "button", text: "›", "aria-label": "Next version", disabled: index === siblings.length - 1,
      onclick: () => go(1) }));
}

function shortTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

let renderQueued = null;
function updateStreamingNode(message) {
  if (renderQueued) return;
  renderQueued = requestAnimationFrame(() => {
    renderQueued = null;
    const node = messagesBox.querySelector(`[data-id="${CSS.escape(message.message_id)}"] .message-body`);
    if (!node) return;
    const atBottom = messagesBox.scrollHeight - messagesBox.scrollTop - messagesBox.clientHeight < 40;
    fillBody(node, message);
    if (atBottom) messagesBox.scrollTop = messagesBox.scrollHeight;
  });
}

// -- sending, regenerating, editing, stopping ----------------------------------------------------

/** An event with an acknowledgement; waits a little for the connection instead of failing at once. */
async function emit(event, payload) {
  if (!socket.connected) {
    const connected = await new Promise((resolve) => {
      const timer = setTimeout(() => { socket.off("connect", onConnect); resolve(false); }, 5000);
      function onConnect() { clearTimeout(timer); resolve(true); }
      socket.once("connect", onConnect);
    });
    if (!connected) return { ok: false, message: "Not connected to the server; your text is kept, try again shortly." };
  }
  return new Promise((resolve) => {
    socket.timeout(15000).emit(event, payload, (error, ack) => {
      resolve(error ? { ok: false, message: "The server did not answer in time." } : ack);
    });
  });
}

function pickedModel() {
  const select = $("model-select");
  return select.value && select.value !== select.dataset.default ? select.value : undefined;
}

async function send(text, editOf) {
  if (state.streaming) { toast("Wait for the reply, or stop it (Esc), before sending another message."); return false; }
  const payload = { message: text, client_message_id: crypto.randomUUID(), model: pickedModel() };
  let parentId = state.leaf;
  if (state.conversationId) {
    payload.conversation_id = state.conversationId;
    if (editOf) { payload.edit_of = editOf.message_id; parentId = editOf.parent_message_id; }
    else if (state.leaf) payload.parent_message_id = state.leaf;
  }
  setBusy(true);
  state.sending = true;
  let ack;
  try { ack = await emit("send_message", payload); } finally { state.sending = false; }
  try { return accepted(ack, text, parentId); } finally { runHeldEvents(); }
}

/** The send's acknowledgement: the conversation (new or not) and the reply being generated. */
function accepted(ack, text, parentId) {
  if (!ack || !ack.ok) {
    setBusy(false);
    toast((ack && ack.message) || "The message was not sent.");
    return false;
  }
  if (!state.conversationId) {
    state.conversationId = ack.conversation_id;
    state.title = text.split(/\s+/).join(" ").slice(0, 60);
    sidebar.upsert(ack.conversation_id, state.title);
    showConversationChrome();
    stats.open(ack.conversation_id);
    history.replaceState(null, "", `/?c=${encodeURIComponent(ack.conversation_id)}`);
  }
  if (!ack.duplicate) {
    state.messages.push({ message_id: ack.message_id, role: "user", content: text, parent_message_id: parentId,
      created_at: new Date().toISOString() });
    startReply(ack.reply_id, ack.message_id);
  }
  return true;
}

function startReply(replyId, parentId, text = "") {
  const early = state.early.get(replyId) || "";
  state.early.delete(replyId);
  state.messages.push({ message_id: replyId, role: "assistant", content: text + early, parent_message_id: parentId,
    streaming: true, meta: {} });
  state.leaf = replyId;
  state.streaming = { message_id: replyId };
  setBusy(true);
  render();
  messagesBox.scrollTop = messagesBox.scrollHeight;
}

function resumeStreaming(generating) {
  const existing = state.messages.find((m) => m.message_id === generating.message_id);
  if (existing) return;
  const parent = state.messages[state.messages.length - 1];
  state.messages.push({ message_id: generating.message_id, role: "assistant", content: generating.text || "",
    parent_message_id: parent ? parent.message_id : null, streaming: true, meta: {} });
  state.leaf = generating.message_id;
  state.streaming = { message_id: generating.message_id };
}

async function regenerate(message) {
  if (state.streaming) return;
  setBusy(true);
  const ack = await emit("regenerate", { conversation_id: state.conversationId, message_id: message.message_id,
    model: pickedModel() });
  if (!ack.ok) { setBusy(false); toast(ack.message); return; }
  startReply(ack.reply_id, ack.message_id);
}

function editMessage(message, button) {
  const node = button.closest(".message");
  const body = node.querySelector(".message-body");
  const box = el("textarea", { "aria-label": "Edit your message" });
  box.value = message.content;
  const restore = () => render();
  const save = async () => {
    const text = box.value.trim();
    if (!text || text === message.content) { restore(); return; }
    if (await send(text, message)) return;
    box.focus();
  };
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); save(); }
    if (event.key === "Escape") { event.stopPropagation(); restore(); }
  });
  body.replaceChildren(el("div", { className: "edit-box" }, box,
    el("div", { className: "message-tools" },
      el("button", { type: "button", className: "primary", text: "Save and send", onclick: save }),
      el("button", { type: "button", text: "Cancel", onclick: restore }))));
  box.focus();
}

async function stop() {
  if (!state.streaming || !state.conversationId) return;
  const ack = await emit("stop_generation", { conversation_id: state.conversationId });
  if (!ack.ok) toast(ack.message);
}

function setBusy(busy) {
  $("stop-button").hidden = !busy;
  $("send-button").disabled = busy;
  $("typing").hidden = !busy;
  if (!busy) $("typing-text").textContent = "Assistant is typing…";
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  input.value = "";
  if (!(await send(text))) input.value = text; // nothing is lost when sending fails
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
document.addEventListener("keydown", (event) => { if (event.key === "Escape" && state.streaming) stop(); });
$("stop-button").addEventListener("click", stop);

// -- the socket ----------------------------------------------------------------------------------

function current(payload) { return payload && payload.conversation_id === state.conversationId; }

// A reply can beat its send's acknowledgement, and a new conversation has no id until that arrives:
// events for another conversation that come while a send is pending wait here, then run after it.
const heldWhileSending = [];
function onConversationEvent(event, handler) {
  socket.on(event, (payload) => {
    if (state.sending && payload && payload.conversation_id && !current(payload)) heldWhileSending.push([handler, payload]);
    else handler(payload);
  });
}
function runHeldEvents() { for (const [handler, payload] of heldWhileSending.splice(0)) handler(payload); }
function streamingMessage(id) { return state.messages.find((m) => m.message_id === id); }

onConversationEvent("response_chunk", (payload) => {
  if (!current(payload)) return;
  const message = streamingMessage(payload.message_id);
  if (!message) { state.early.set(payload.message_id, (state.early.get(payload.message_id) || "") + payload.chunk); return; }
  message.content += payload.chunk;
  updateStreamingNode(message);
});

onConversationEvent("routing", (payload) => {
  if (!current(payload)) return;
  const message = streamingMessage(payload.message_id);
  if (!message) return;
  message.agent = payload.agent;
  message.meta = { ...(message.meta || {}), routing: payload };
  const badge = messagesBox.querySelector(`[data-id="${CSS.escape(message.message_id)}"] .agent-badge`);
  if (badge) badge.replaceWith(agentBadge(message));
});

onConversationEvent("status", (payload) => {
  if (!current(payload)) return;
  if (payload.phase === "notice") toast(payload.detail, "info");
  else if (payload.detail) $("typing-text").textContent = payload.detail;
});

onConversationEvent("response_done", (payload) => {
  if (!current(payload)) return;
  const message = streamingMessage(payload.message_id);
  if (message) Object.assign(message, { streaming: false, finish_reason: payload.finish_reason, agent: payload.agent,
    meta: payload.meta || message.meta });
  state.streaming = null;
  setBusy(false);
  render();
  stats.refresh();
  sidebar.upsert(state.conversationId, state.title);
});

onConversationEvent("token_usage", (payload) => { if (current(payload)) meter.update(payload); });

socket.on("conversation_title", (payload) => {
  sidebar.upsert(payload.conversation_id, payload.title);
  if (current(payload)) { state.title = payload.title; showConversationChrome(); }
});

onConversationEvent("error", (payload) => {
  if (payload && payload.conversation_id && !current(payload)) return;
  toast((payload && payload.message) || "Something went wrong.");
  const message = payload && streamingMessage(payload.message_id);
  if (message && message.streaming) {
    Object.assign(message, { streaming: false, finish_reason: "error" });
    state.streaming = null;
    setBusy(false);
    render();
  }
});

socket.on("file_progress", (payload) => uploader.progress(payload));
socket.on("file_done", (payload) => uploader.finished(payload, false));
socket.on("file_error", (payload) => uploader.finished(payload, true));

let everConnected = false;
socket.on("connect", () => {
  $("connection").hidden = true;
  document.body.dataset.connected = "true";
  if (everConnected && state.conversationId) {
    openConversation(state.conversationId).catch(reportError); // a restart or a dropped link: reload
  }
  everConnected = true;
});
socket.on("disconnect", () => { $("connection").hidden = false; document.body.dataset.connected = "false"; });
socket.on("connect_error", () => { if (everConnected) $("connection").hidden = false; });

// -- models and start-up -------------------------------------------------------------------------

/** The picker follows the conversation: the model its newest reply used, when still offered. */
function pickModelOf(path) {
  const select = $("model-select");
  const used = [...path].reverse().map((m) => m.meta && m.meta.model).find(Boolean);
  if (used && [...select.options].some((option) => option.value === used)) select.value = used;
}

async function loadModels() {
  const select = $("model-select");
  try {
    const data = await api("/models");
    if (!data.configured) return;
    select.replaceChildren(...data.models.map((name) => el("option", { value: name, text: name })));
    select.dataset.default = data.default;
    const saved = localStorage.getItem("model");
    if (saved && data.models.includes(saved)) select.value = saved;
    select.disabled = false;
  } catch (error) { /* the picker keeps the configured model */ }
  select.addEventListener("change", () => localStorage.setItem("model", select.value));
}

function start() {
  loadModels();
  const params = new URLSearchParams(window.location.search);
  const id = params.get("c");
  if (id) {
    const whenConnected = () => openConversation(id, params.get("m") || undefined).catch((error) => {
      reportError(error);
      newConversation();
    });
    if (socket.connected) whenConnected(); else socket.once("connect", whenConnected);
  } else {
    newConversation();
  }
}

start();
