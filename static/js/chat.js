// The chat page: one conversation's thread, live replies over Socket.IO, branches, and the
// panels around it. Server state wins: after a reconnect the open conversation is reloaded.
/* global io */
import { api, el, reportError, toast } from "./api.js";
import { TurnChart, turnOf } from "./chart.js";
import { Menu } from "./menu.js";
import { TokenMeter } from "./meter.js";
import { reveal } from "./reveal.js";
import { Scroller } from "./scroller.js";
import { installShortcuts } from "./shortcuts.js";
import { Sidebar } from "./sidebar.js";
import { StatsPanel } from "./stats.js";
import { SummaryPanel } from "./summary.js";
import { newestLeaf, newestLeafUnder, pathTo } from "./thread.js";
import { ThreadView, agentBadge, emptyState, fillBody, loadingState } from "./thread_view.js";
import { ImageTray, ThreadImages } from "./images.js";
import { Uploader } from "./uploads.js";

const config = document.getElementById("page-config").dataset;
const $ = (id) => document.getElementById(id);
const messagesBox = $("messages");
const input = $("message-input");

const state = {
  conversationId: null, title: "", messages: [], leaf: null, summary: null,
  streaming: null, // the reply being generated: {message_id}
  early: new Map(), // chunks that arrived before the send's acknowledgement
  sending: false, // a send_message awaits its acknowledgement
  stopPending: false, // Stop was pressed while sending: stop the reply once the acknowledgement names it
};

const chart = new TurnChart($("turn-chart"), $("chart-tip"));
const meter = new TokenMeter(config, drawChart);
const scroller = new Scroller(messagesBox, $("jump-latest"));
const stats = new StatsPanel();
const summaryPanel = new SummaryPanel({ onChanged: () => reloadConversation(), goTo });
const view = new ThreadView(messagesBox, {
  regenerate, send, goTo, openSummary: () => summaryPanel.show(), state: () => state, rerender: render,
  showBranch: (id) => { state.leaf = newestLeafUnder(state.messages, id); render(); refreshMeter(); },
});
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
const imageTray = new ImageTray(config, { input: $("image-input"), tray: $("image-tray") });
$("image-input").addEventListener("change", () => input.focus());
const threadImages = new ThreadImages();
new Menu($("conversation-menu-button"), $("conversation-menu"));
const socket = io({ transports: ["websocket", "polling"], reconnectionDelayMax: 2000 });

// -- conversations -----------------------------------------------------------------------------

async function openConversation(id, focusMessageId) {
  if (id !== state.conversationId) messagesBox.replaceChildren(loadingState());
  const data = await api(`/load_conversation/${encodeURIComponent(id)}`);
  await threadImages.load(id);
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
  refreshMeter();
  stats.open(id);
  summaryPanel.open(id);
  pickModelOf(pathTo(state.messages, state.leaf));
  if (focusMessageId) goTo(focusMessageId);
  else scroller.toBottom();
  history.replaceState(null, "", `/?c=${encodeURIComponent(id)}`);
}

/** The summary or pins changed: the thread's divider and the meter follow. */
async function reloadConversation() {
  if (!state.conversationId || state.streaming) return;
  const data = await api(`/load_conversation/${encodeURIComponent(state.conversationId)}`).catch(() => null);
  if (!data) return;
  state.summary = data.summary;
  render();
  refreshMeter();
}

function newConversation() {
  Object.assign(state, { conversationId: null, title: "", messages: [], leaf: null, summary: null, streaming: null });
  threadImages.reset();
  showConversationChrome();
  render();
  refreshMeter();
  stats.open(null);
  summaryPanel.open(null);
  history.replaceState(null, "", "/");
  input.focus();
}

function showConversationChrome() {
  const id = state.conversationId;
  $("conversation-title").textContent = id ? state.title || "Untitled conversation" : "New conversation";
  document.title = id ? `${state.title || "Untitled conversation"} – Chat Application` : "Chat Application";
  for (const name of ["rename-conversation", "rename-item", "delete-conversation"]) $(name).disabled = !id;
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

async function rename() {
  const title = window.prompt("New title for this conversation", state.title || "");
  if (title === null || !title.trim()) return;
  try {
    const result = await api(`/conversations/${encodeURIComponent(state.conversationId)}`,
      { method: "PATCH", body: JSON.stringify({ title }) });
    state.title = result.title;
    sidebar.upsert(state.conversationId, result.title);
    showConversationChrome();
  } catch (error) { reportError(error); }
}
$("rename-conversation").addEventListener("click", rename);
$("rename-item").addEventListener("click", rename);

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
    messagesBox.replaceChildren(emptyState(Boolean(config.endpoint), (text) => { input.value = text; input.focus(); meter.typed(text); }));
    return;
  }
  view.render(path, state.summary);
  threadImages.decorate(messagesBox);
}

/** Scroll to a message of the thread and mark it (links in breakdowns and the summary panel). */
function goTo(messageId) {
  const node = messagesBox.querySelector(`[data-id="${CSS.escape(messageId)}"]`);
  if (!node) { toast("That message is not on the branch shown.", "info", 4); return; }
  for (const old of messagesBox.querySelectorAll(".message.found")) old.classList.remove("found");
  node.classList.add("found");
  node.scrollIntoView({ block: "center" });
  scroller.onScroll();
}

function refreshMeter() {
  meter.refresh(state.conversationId, state.leaf, pickedModel());
  meter.typed(input.value);
}

function drawChart(budget) {
  const shown = state.summary ? state.summary.last_message_id : null;
  if (state.conversationId && (budget.summary_last_message_id || null) !== shown) reloadConversation(); // compacted
  const turns = pathTo(state.messages, state.leaf).filter((m) => m.role === "assistant" && m.meta && m.meta.usage)
    .map((m) => turnOf(m.meta.usage));
  const threshold = Math.round(budget.compact_at * (budget.prompt_room || budget.window - budget.reply_tokens) * (budget.ratio || 1));
  chart.draw(turns, { window: budget.window, threshold });
}

$("chart-toggle").addEventListener("click", (event) => {
  const open = $("chart-panel").hidden;
  $("chart-panel").hidden = !open;
  event.currentTarget.setAttribute("aria-expanded", String(open));
});

let renderQueued = null;
function updateStreamingNode(message) {
  if (renderQueued) return;
  renderQueued = requestAnimationFrame(() => {
    renderQueued = null;
    const node = messagesBox.querySelector(`[data-id="${CSS.escape(message.message_id)}"] .message-body`);
    if (!node) return;
    fillBody(node, message);
    scroller.contentChanged();
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
  let ack, images = [];
  try {
    if (!editOf && imageTray.count) images = await imageTray.upload(payload.client_message_id); // before the message
    ack = await emit("send_message", payload);
  } catch (error) {
    ack = { ok: false, message: error.message };
  } finally { state.sending = false; }
  if (ack && ack.ok && images.length) { threadImages.remember(ack.message_id, images); imageTray.clear(); }
  try { return accepted(ack, text, parentId); } finally { runHeldEvents(); }
}

/** The send's acknowledgement: the conversation (new or not) and the reply being generated. */
function accepted(ack, text, parentId) {
  if (!ack || !ack.ok) {
    state.stopPending = false;
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
    summaryPanel.open(ack.conversation_id);
    history.replaceState(null, "", `/?c=${encodeURIComponent(ack.conversation_id)}`);
  }
  if (!ack.duplicate) {
    state.messages.push({ message_id: ack.message_id, role: "user", content: text, parent_message_id: parentId,
      created_at: new Date().toISOString(), tokens: meter.draft });
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
  scroller.toBottom();
  if (state.stopPending) { state.stopPending = false; stop(); }
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

/** Up arrow in an empty box: edit the newest message you sent on this branch. */
function editLast() {
  if (state.streaming) return false;
  const mine = pathTo(state.messages, state.leaf).filter((m) => m.role === "user");
  const last = mine[mine.length - 1];
  const button = last && messagesBox.querySelector(`[data-id="${CSS.escape(last.message_id)}"] [aria-label="Edit"]`);
  if (!button) return false;
  view.edit(last, button);
  return true;
}

async function stop() {
  if (state.sending) { state.stopPending = true; return; } // Stop before the send's ack: stop once it names the reply
  if (!state.streaming || !state.conversationId) return;
  const ack = await emit("stop_generation", { conversation_id: state.conversationId });
  if (!ack.ok) toast(ack.message);
}

function setBusy(busy) {
  $("stop-button").hidden = !busy;
  $("send-button").disabled = busy;
  $("typing").hidden = !busy;
  document.body.dataset.streaming = busy ? "true" : "false";
  if (!busy) $("typing-text").textContent = "Assistant is typing…";
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value.trim() || !imageTray.count ? input.value : "What is in this image?";
  if (!text.trim()) return;
  if (meter.figures().tooLong) { toast("This message does not fit the model's window: shorten it, or attach it as a file."); return; }
  input.value = "";
  autoGrow();
  if (!(await send(text))) { input.value = text; autoGrow(); } // nothing is lost when sending fails
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
function autoGrow() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight + 2, window.innerHeight * 0.3)}px`;
}
input.addEventListener("input", () => { autoGrow(); meter.typed(input.value); });
$("stop-button").addEventListener("click", stop);
installShortcuts({ search: () => sidebar.focusFilter(), newChat: () => { sidebar.close(); newConversation(); },
  stop: () => { if (state.streaming || state.sending) stop(); else sidebar.close(); }, editLast, input });

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
  reveal(message, updateStreamingNode); // a steady pace whatever the batch size (reveal.js)
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
  scroller.contentChanged();
  stats.refresh();
  sidebar.upsert(state.conversationId, state.title);
  refreshMeter(); // what the next request carries now, counted by the server
});

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
  select.addEventListener("change", () => { localStorage.setItem("model", select.value); refreshMeter(); });
}

function start() {
  loadModels();
  const params = new URLSearchParams(window.location.search);
  const id = params.get("c");
  if (id) {
    messagesBox.replaceChildren(loadingState());
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
