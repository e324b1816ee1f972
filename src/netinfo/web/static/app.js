// NetInfo Manager: a little script on top of pages that work without it.
// - the tree: a twisty button loads a directory's children when opened (lazy);
// - the filter box asks the server for the first page of matches as you type;
// - forms with data-confirm ask first.
(function () {
  "use strict";

  function fetchFragment(url) {
    return fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error(r.status + " " + r.statusText); }
        return r.text();
      });
  }

  function toggle(button) {
    var item = button.parentElement;
    var open = button.getAttribute("aria-expanded") === "true";
    var sub = item.querySelector(":scope > .subtree");
    if (open) {
      button.setAttribute("aria-expanded", "false");
      if (sub) { sub.hidden = true; }
      return;
    }
    button.setAttribute("aria-expanded", "true");
    if (sub) { sub.hidden = false; return; }
    sub = document.createElement("div");
    sub.className = "subtree";
    sub.setAttribute("aria-busy", "true");
    item.appendChild(sub);
    fetchFragment(button.getAttribute("data-url")).then(function (html) {
      sub.innerHTML = html;
      sub.removeAttribute("aria-busy");
    }, function (err) {
      sub.textContent = "Could not load: " + err.message;
      sub.removeAttribute("aria-busy");
    });
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.twisty");
    if (b) { ev.preventDefault(); toggle(b); }
  });

  // Left and right arrows close and open a tree entry whose link or twisty has focus.
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") { return; }
    var li = ev.target.closest(".tree li");
    if (!li || ev.target.matches("input, textarea, select")) { return; }
    var b = li.querySelector(":scope > button.twisty");
    if (!b) { return; }
    var open = b.getAttribute("aria-expanded") === "true";
    if ((ev.key === "ArrowRight") !== open) { ev.preventDefault(); toggle(b); }
  });

  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    var q = f.getAttribute("data-confirm");
    if (q && !window.confirm(q)) { ev.preventDefault(); }
  });

  var filter = document.querySelector("form.filter[data-live]");
  if (filter) {
    var box = filter.querySelector("input[name=q]");
    var target = document.getElementById("kids");
    var timer = null;
    var seq = 0;
    box.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var n = ++seq;
        var url = filter.getAttribute("data-live");
        url += (url.indexOf("?") < 0 ? "?" : "&") + "q=" + encodeURIComponent(box.value);
        fetchFragment(url).then(function (html) {
          if (n === seq) { target.innerHTML = html; }
        }, function () { /* the form still works by submitting */ });
      }, 200);
    });
  }
})();
