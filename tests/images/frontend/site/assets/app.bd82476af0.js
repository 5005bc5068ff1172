// Lab frontend: a stand-in for a bundler's output (one entry chunk). It marks the page as started, so a
// browser-side check can tell that the hashed script loaded, and shows which page is open.
(function () {
  "use strict";
  var root = document.getElementById("app");
  if (!root) {
    return;
  }
  root.setAttribute("data-started", "1");
  var page = document.createElement("p");
  page.className = "page";
  page.textContent = "page: " + window.location.pathname;
  root.appendChild(page);
})();
