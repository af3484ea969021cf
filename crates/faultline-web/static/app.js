// faultline: times on the charts in the viewer's time zone (UTC stays on hover), and a refresh of
// the page's content every N seconds (N from <main data-refresh>) without reloading, so filters (in
// the address) and the scroll position stay. Nothing refreshes if N is 0.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main) return;

  function localTimes(root) {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (!zone) return;
    root.querySelectorAll("[data-ms]").forEach(function (el) {
      var at = new Date(parseInt(el.getAttribute("data-ms"), 10));
      if (isNaN(at.getTime())) return;
      var text = el.getAttribute("data-format") === "day"
        ? at.toLocaleDateString(undefined, { weekday: "short", day: "numeric" })
        : at.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
      for (var n = el.firstChild; n; n = n.nextSibling) {
        if (n.nodeType === 3 && n.nodeValue.trim() !== "") n.nodeValue = text;
      }
    });
    root.querySelectorAll(".zone").forEach(function (el) { el.textContent = zone; });
  }
  localTimes(main);

  // The error list: "all on this page" ticks every row; "/" jumps to the text filter.
  document.addEventListener("change", function (event) {
    if (event.target.id !== "select-all") return;
    main.querySelectorAll("input[name=fingerprint]").forEach(function (box) { box.checked = event.target.checked; });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA")) return;
    var box = document.getElementById("errors-query");
    if (!box) return;
    event.preventDefault();
    box.focus();
  });

  var seconds = parseInt(main.getAttribute("data-refresh") || "0", 10);
  if (!(seconds > 0)) return;

  function busy() {
    // Ticked rows of the error list would be lost.
    if (main.querySelector("input[name=fingerprint]:checked")) return true;
    var el = document.activeElement;
    if (!el || !main.contains(el)) return false;
    return el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA";
  }

  function openDetails(root) {
    var open = [];
    root.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.push(i); });
    return open;
  }

  function refresh() {
    if (document.hidden || busy()) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) return null;
        return response.text();
      })
      .then(function (html) {
        if (html === null || busy()) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        if (!fresh) return;
        var x = window.scrollX, y = window.scrollY;
        var open = openDetails(main);
        main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
        var details = main.querySelectorAll("details");
        open.forEach(function (i) { if (details[i]) details[i].open = true; });
        window.scrollTo(x, y);
        localTimes(main);
        main.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* offline for a moment: try again next time */ });
  }

  window.setInterval(refresh, seconds * 1000);
})();
