// The light/dark switch in the top bar; also points the code-highlighting style at the theme.
(function () {
  "use strict";
  var button = document.getElementById("theme-toggle");
  function apply(theme) {
    document.documentElement.dataset.theme = theme;
    button.setAttribute("aria-label", theme === "dark" ? "Switch to light theme" : "Switch to dark theme");
    var light = document.getElementById("hljs-light"), dark = document.getElementById("hljs-dark");
    if (light && dark) {
      light.media = theme === "light" ? "all" : "not all";
      dark.media = theme === "dark" ? "all" : "not all";
    }
  }
  apply(document.documentElement.dataset.theme || "light");
  button.addEventListener("click", function () {
    var next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    try { localStorage.setItem("theme", next); } catch (e) { /* not saved, still switched */ }
    apply(next);
  });
})();
