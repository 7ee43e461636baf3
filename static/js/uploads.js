// Uploads: a button or drag and drop; a progress bar for the bytes, then for the per-chunk
// analysis (file_progress events); the result lands in the conversation.
import { csrfToken, toast } from "./api.js";

export class Uploader {
  constructor(config, { currentConversation, onAccepted, onFinished }) {
    this.maxBytes = Number(config.maxFileMb) * 1024 * 1024;
    this.allowed = (config.allowed || "").split(",").filter(Boolean);
    this.currentConversation = currentConversation;
    this.onAccepted = onAccepted;
    this.onFinished = onFinished;
    this.box = document.getElementById("upload-status");
    this.label = document.getElementById("upload-label");
    this.bar = document.getElementById("upload-progress");
    this.jobs = new Set();
    // A short job can finish before its upload request returns: its file_done/file_error waits
    // here, keyed by job id, until the 202 names the job.
    this.early = new Map();
    const input = document.getElementById("file-input");
    input.addEventListener("change", () => {
      if (input.files[0]) this.upload(input.files[0]);
      input.value = "";
    });
    this.dropZone(document.getElementById("main"), document.getElementById("drop-overlay"));
  }

  dropZone(zone, overlay) {
    let depth = 0;
    const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
    zone.addEventListener("dragenter", (event) => { if (hasFiles(event)) { depth += 1; overlay.hidden = false; } });
    zone.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
    zone.addEventListener("dragover", (event) => { if (hasFiles(event)) event.preventDefault(); });
    zone.addEventListener("drop", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth = 0;
      overlay.hidden = true;
      if (event.dataTransfer.files[0]) this.upload(event.dataTransfer.files[0]);
    });
  }

  problem(file) {
    const extension = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
    if (!this.allowed.includes(extension)) return `Only ${this.allowed.join(", ")} files can be analysed.`;
    if (file.size > this.maxBytes) return `The file is larger than the ${this.maxBytes / 1048576} MB limit.`;
    if (!file.size) return "The file is empty.";
    return null;
  }

  upload(file) {
    const problem = this.problem(file);
    if (problem) { toast(problem); return; }
    const form = new FormData();
    form.append("file", file);
    const conversationId = this.currentConversation();
    if (conversationId) form.append("conversation_id", conversationId);
    const request = new XMLHttpRequest();
    request.open("POST", "/upload_file");
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.responseType = "json";
    this.show(`Uploading ${file.name}…`, 0);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) this.show(`Uploading ${file.name}…`, (event.loaded / event.total) * 100);
    });
    request.addEventListener("load", () => {
      const body = request.response || {};
      if (request.status !== 202) {
        this.hide();
        toast(body.message || `The upload failed (${request.status}).`);
        return;
      }
      this.jobs.add(body.job_id);
      this.show(`Analysing ${body.file_name}…`, 0);
      this.onAccepted(body);
      const early = this.early.get(body.job_id);
      if (early) { this.early.delete(body.job_id); this.finished(...early); }
    });
    request.addEventListener("error", () => { this.hide(); toast("The upload failed: the server cannot be reached."); });
    request.send(form);
  }

  /** file_progress / file_done / file_error from the user's room. */
  progress(event) {
    if (!this.jobs.has(event.job_id)) return;
    const label = event.phase === "chunking" ? `Splitting ${event.file_name} into chunks…`
      : `Analysing ${event.file_name}: chunk ${event.done} of ${event.total}`;
    this.show(label, event.total ? (event.done / event.total) * 100 : 0);
  }

  finished(event, failed) {
    if (!this.jobs.delete(event.job_id)) {
      if (!this.box.hidden) this.rememberEarly(event, failed);
      return;
    }
    this.hide();
    if (failed) toast(event.message || "The file could not be analysed.");
    this.onFinished(event);
  }

  rememberEarly(event, failed) {
    this.early.set(event.job_id, [event, failed]);
    while (this.early.size > 20) this.early.delete(this.early.keys().next().value);
  }

  show(text, percent) {
    this.box.hidden = false;
    this.label.textContent = text;
    this.bar.value = Math.round(percent);
  }

  hide() { this.box.hidden = true; }
}
