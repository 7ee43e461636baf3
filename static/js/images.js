// Images attached to a message: picked in the composer, previewed (and removable) before sending,
// uploaded with the message's client id just before it is sent, and shown as thumbnails in the
// thread. The server cleans and stores them (POST /images) and serves them to their owner only.
import { api, el, toast } from "./api.js";

const TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];

/** The composer's tray of images waiting to be sent with the next message. */
export class ImageTray {
  constructor(config, { input, tray, onChange }) {
    this.maxBytes = Number(config.imageMaxMb) * 1024 * 1024;
    this.perMessage = Number(config.imagesPerMessage) || 4;
    this.tray = tray;
    this.onChange = onChange || (() => {});
    this.items = []; // {file, url}
    input.addEventListener("change", async () => {
      const files = Array.from(input.files);
      input.value = "";
      for (const problem of await this.add(files)) toast(problem);
    });
  }

  get count() { return this.items.length; }

  /** Add picked files; returns the problems (wrong type, too big, too many) for the caller to show.
   * Previews are data: URLs (the page's Content-Security-Policy allows no blob: images). */
  async add(files) {
    const problems = [];
    for (const file of files) {
      if (!TYPES.includes(file.type)) problems.push(`${file.name}: only PNG, JPEG, WebP and GIF images can be attached.`);
      else if (file.size > this.maxBytes) problems.push(`${file.name} is larger than the ${this.maxBytes / 1048576} MB limit.`);
      else if (this.items.length >= this.perMessage) problems.push(`A message can carry at most ${this.perMessage} images.`);
      else this.items.push({ file, url: await dataUrl(file) });
    }
    this.draw();
    return problems;
  }

  remove(item) {
    this.items = this.items.filter((other) => other !== item);
    this.draw();
  }

  clear() {
    this.items = [];
    this.draw();
  }

  draw() {
    this.tray.hidden = !this.items.length;
    this.tray.replaceChildren(...this.items.map((item) => el("figure", { className: "image-chip" },
      el("img", { src: item.url, alt: `Preview of ${item.file.name}` }),
      el("figcaption", { text: item.file.name }),
      el("button", { type: "button", className: "icon-only image-remove", "aria-label": `Remove ${item.file.name}`,
        text: "×", onclick: () => this.remove(item) }))));
    this.onChange(this.items.length);
  }

  /** Upload every image for the message about to be sent with `clientId`; on a failure the ones
   * already uploaded are taken back and the error is thrown (the tray keeps its images). */
  async upload(clientId) {
    const done = [];
    try {
      for (const item of this.items) {
        const form = new FormData();
        form.append("file", item.file);
        form.append("client_message_id", clientId);
        done.push(await api("/images", { method: "POST", body: form }));
      }
    } catch (error) {
      await Promise.all(done.map((image) => api(image.url, { method: "DELETE" }).catch(() => null)));
      throw error;
    }
    return done;
  }
}

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** The thread's thumbnails: the images of the open conversation, by message id. */
export class ThreadImages {
  constructor() { this.byMessage = new Map(); }

  reset() { this.byMessage.clear(); }

  async load(conversationId) {
    this.reset();
    const data = await api(`/conversations/${encodeURIComponent(conversationId)}/images`).catch(() => ({ images: [] }));
    for (const image of data.images || []) this.remember(image.message_id, [image]);
  }

  remember(messageId, images) {
    this.byMessage.set(messageId, [...(this.byMessage.get(messageId) || []), ...images]);
  }

  /** Add the thumbnails under each message shown in `box` that has images. */
  decorate(box) {
    for (const [messageId, images] of this.byMessage) {
      const node = box.querySelector(`[data-id="${CSS.escape(messageId)}"]`);
      if (!node || node.querySelector(".message-images")) continue;
      const strip = el("div", { className: "message-images" }, ...images.map((image) =>
        el("a", { href: image.url, target: "_blank", rel: "noopener", title: image.file_name },
          el("img", { src: image.url, alt: image.file_name, loading: "lazy", width: image.width, height: image.height }))));
      const body = node.querySelector(".message-body");
      if (body) body.after(strip); else node.append(strip);
    }
  }
}
