// Markdown to safe DOM: marked parses, DOMPurify sanitises (no scripts, no event handlers, no
// javascript: links), highlight.js colours code, and each code block gets a copy button.
/* global marked, DOMPurify, hljs */
import { el, toast } from "./api.js";

marked.setOptions({ gfm: true, breaks: true });
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
  }
});

export function renderMarkdown(text) {
  const html = marked.parse(text || "");
  const fragment = DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true, FORBID_TAGS: ["style", "form", "input"] });
  for (const block of fragment.querySelectorAll("pre > code")) {
    try { hljs.highlightElement(block); } catch (error) { /* unknown language: left plain */ }
    block.parentElement.append(copyButton(() => block.textContent));
  }
  return fragment;
}

export function copyButton(getText, label = "Copy") {
  return el("button", {
    type: "button", className: "copy-code", text: label, "aria-label": label === "Copy" ? "Copy code" : label,
    onclick: async (event) => {
      const button = event.currentTarget;
      try {
        await navigator.clipboard.writeText(getText());
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = label; }, 1500);
      } catch (error) { toast("Copying is not allowed here; select the text instead."); }
    },
  });
}
