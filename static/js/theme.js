// Runs in <head> before the page paints: the saved theme, else the system's.
(function () {
  "use strict";
  var saved = null;
  try { saved = localStorage.getItem("theme"); } catch (e) { /* storage blocked: follow the system */ }
  var dark = saved ? saved === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
})();
