// Branches on the page: the server gives every message its resolved parent, so a thread is
// just a walk up parent links (threads.py has the storage rules).

export function childrenOf(messages, parentId) {
  return messages.filter((m) => (m.parent_message_id || null) === (parentId || null));
}

export function pathTo(messages, leafId) {
  const byId = new Map(messages.map((m) => [m.message_id, m]));
  const path = [];
  const seen = new Set();
  let at = byId.get(leafId);
  while (at && !seen.has(at.message_id)) {
    seen.add(at.message_id);
    path.push(at);
    at = at.parent_message_id ? byId.get(at.parent_message_id) : null;
  }
  return path.reverse();
}

export function newestLeafUnder(messages, messageId) {
  const byId = new Map(messages.map((m) => [m.message_id, m]));
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    let at = messages[i];
    const seen = new Set();
    while (at && !seen.has(at.message_id)) {
      if (at.message_id === messageId) return messages[i].message_id;
      seen.add(at.message_id);
      at = at.parent_message_id ? byId.get(at.parent_message_id) : null;
    }
  }
  return messageId;
}

export function newestLeaf(messages) {
  return messages.length ? messages[messages.length - 1].message_id : null;
}
