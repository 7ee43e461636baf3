// The page's one way to call the server, show an error, and build DOM nodes (text only, never HTML).

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

/** The page's CSRF token (<meta name="csrf-token">), sent back on every state-changing request. */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

export async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
  if (init.body !== undefined && !(init.body instanceof FormData)) init.headers["Content-Type"] = "application/json";
  if (init.method && init.method !== "GET") init.headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError("The server cannot be reached. Check your connection and try again.", 0);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(body.message || `The server answered ${response.status}.`, response.status);
  return body;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function toast(message, kind = "error", seconds = 8) {
  const box = document.getElementById("toasts");
  const item = el("div", { className: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    el("span", { text: message }));
  const close = () => item.remove();
  item.append(el("button", { type: "button", "aria-label": "Dismiss", text: "×", onclick: close }));
  box.append(item);
  setTimeout(close, seconds * 1000);
  return item;
}

export function reportError(error) {
  toast(error instanceof Error ? error.message : String(error));
}
