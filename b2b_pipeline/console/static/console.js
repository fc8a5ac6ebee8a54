// The console works without this file; it only adds conveniences (no inline scripts: the
// Content-Security-Policy allows scripts from the console itself only).
"use strict";

function wire(root) {
  // "Select every row" for the bulk retry.
  root.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      var form = box.closest("form");
      form.querySelectorAll('input[name="exception_id"]').forEach(function (row) {
        row.checked = box.checked;
      });
    });
  });
  // A run takes seconds: say so, and keep the button from being pressed twice.
  root.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[data-busy]");
      if (button) {
        window.setTimeout(function () {
          button.disabled = true;
          button.textContent = button.getAttribute("data-busy");
        }, 0);
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", function () { wire(document); });
document.addEventListener("htmx:afterSwap", function (event) { wire(event.target); });
