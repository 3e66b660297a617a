// Switchyard console: what the server-rendered pages do better with a script. Every page reads
// fine without it.
(function () {
  "use strict";

  // An element with data-refresh="MS" and an id is read again from the server every MS
  // milliseconds (the triggers' live counters): the page is fetched and the element's contents
  // replaced by the fresh copy's.
  document.querySelectorAll("[data-refresh][id]").forEach(function (el) {
    var every = parseInt(el.getAttribute("data-refresh"), 10) || 2000;
    setInterval(function () {
      fetch(location.href, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(el.id);
          if (fresh) { el.innerHTML = fresh.innerHTML; }
        })
        .catch(function () { /* the next round tries again */ });
    }, every);
  });

  // The live tail: outcomes arrive as server-sent events from /v1/tail and go on top of the table.
  var tail = document.getElementById("tail");
  if (!tail || !window.EventSource) { return; }
  var state = document.getElementById("tail-status");
  var rows = tail.querySelector("tbody");
  var maxRows = 500;
  var source = new EventSource(tail.getAttribute("data-stream"));
  source.onopen = function () { state.textContent = "Following: new outcomes appear at the top as they are recorded."; };
  source.onerror = function () { state.textContent = "Connection lost; reconnecting…"; };
  source.addEventListener("problem", function (m) {
    state.textContent = m.data;
    source.close();
  });
  source.addEventListener("outcome", function (m) {
    var o = JSON.parse(m.data);
    var tr = document.createElement("tr");
    tr.className = "fresh " + o.status;
    function cell(text, cls) {
      var td = document.createElement("td");
      td.textContent = text;
      if (cls) { td.className = cls; }
      tr.appendChild(td);
      return td;
    }
    cell(o.finished.replace("T", " "));
    var id = cell("");
    var a = document.createElement("a");
    a.href = "/ui/events/" + encodeURIComponent(o.eventId);
    a.textContent = o.eventId;
    id.appendChild(a);
    cell(o.type);
    cell(o.source);
    cell(o.trigger);
    var st = cell("");
    var badge = document.createElement("span");
    badge.className = "status " + o.status;
    badge.textContent = o.status;
    st.appendChild(badge);
    cell(String(o.attempts), "n");
    cell(o.lastCode ? String(o.lastCode) : "", "n");
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > maxRows) { rows.removeChild(rows.lastChild); }
  });
})();
