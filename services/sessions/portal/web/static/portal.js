// Progressive enhancement for the SessionGuard portal. Every page works
// without it: a confirmation is a <details> element whose form is the
// second step, and the filters are shown open. With it, opening a confirmation moves the focus to its button
// and closes the others, and Escape closes it again.
(function () {
  "use strict";
  // On a phone the filters fold away behind their summary.
  if (window.matchMedia && window.matchMedia("(max-width: 640px)").matches) {
    document.querySelectorAll("details.filter-fold[open]").forEach(function (fold) {
      fold.open = false;
    });
  }
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.classList.contains("confirm") || !details.open) {
      return;
    }
    document.querySelectorAll("details.confirm[open]").forEach(function (other) {
      if (other !== details) {
        other.open = false;
      }
    });
    var button = details.querySelector("button[type=submit]");
    if (button) {
      button.focus();
    }
  }, true);
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !document.activeElement) {
      return;
    }
    var details = document.activeElement.closest("details.confirm[open]");
    if (details) {
      details.open = false;
      details.querySelector("summary").focus();
    }
  });
})();
