// Line icons from the page's sprite (templates/icons.html), and icon buttons that always carry a name.
import { el } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";

export function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const use = document.createElementNS(SVG, "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

/** A button showing only an icon; `label` is its accessible name and its tooltip. */
export function iconButton(name, label, onclick, extra = {}) {
  return el("button", { type: "button", className: "icon-only tool-action", "aria-label": label, title: label,
    onclick, ...extra }, icon(name));
}
