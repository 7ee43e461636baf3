// Minimal page logic over the REST API. Text is always inserted as text, never as HTML.
(function () {
  "use strict";
  const main = document.getElementById("conversation");
  const list = document.getElementById("conversation-list");

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ headers: { "Content-Type": "application/json" } }, options));
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    return body;
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function showError(error) { main.replaceChildren(element("p", error.message, "banner")); }

  async function openConversation(id) {
    const data = await api("/load_conversation/" + encodeURIComponent(id));
    const nodes = [element("h2", data.title || "Untitled conversation")];
    if (!data.conversation.length) nodes.push(element("p", "No messages yet.", "hint"));
    for (const message of data.conversation) {
      const box = element("div", undefined, "message");
      box.append(element("span", message.role, "role"), document.createTextNode(message.content));
      nodes.push(box);
    }
    main.replaceChildren(...nodes);
  }

  function highlighted(snippet, spans) {
    const node = element("p");
    let at = 0;
    for (const [start, end] of spans) {
      node.append(document.createTextNode(snippet.slice(at, start)), element("mark", snippet.slice(start, end)));
      at = end;
    }
    node.append(document.createTextNode(snippet.slice(at)));
    return node;
  }

  async function search(query) {
    const data = await api("/search_conversations?q=" + encodeURIComponent(query));
    const nodes = [element("h2", "Results for " + query)];
    for (const hit of data.conversations) {
      const link = element("a", hit.title || "Untitled conversation");
      link.href = "#";
      link.addEventListener("click", (event) => { event.preventDefault(); openConversation(hit.conversation_id).catch(showError); });
      nodes.push(link, highlighted(hit.snippet, hit.highlights));
    }
    if (!data.conversations.length) nodes.push(element("p", "Nothing found.", "hint"));
    main.replaceChildren(...nodes);
  }

  list.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-id]");
    if (!link) return;
    event.preventDefault();
    openConversation(link.dataset.id).catch(showError);
  });

  document.getElementById("new-conversation").addEventListener("click", async () => {
    try {
      const data = await api("/start_conversation", { method: "POST", body: "{}" });
      const item = element("li");
      const link = element("a", "Untitled conversation");
      link.href = "#";
      link.dataset.id = data.conversation_id;
      item.append(link);
      list.prepend(item);
      await openConversation(data.conversation_id);
    } catch (error) { showError(error); }
  });

  document.getElementById("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = document.getElementById("search-query").value.trim();
    if (query) search(query).catch(showError);
  });
})();
