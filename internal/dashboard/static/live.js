// Live log view: follows the host's SSE stream (the API's
// /api/v1/hosts/{name}/logs?follow=1) and filters lines by text and level.
// No dependencies; the page works without it (it then shows the backlog).
(function () {
  "use strict";
  var LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
  var MAX_LINES = 5000;
  var log = document.getElementById("live-log");
  var status = document.getElementById("live-status");
  var grep = document.getElementById("f-grep");
  var level = document.getElementById("f-level");
  var follow = document.getElementById("f-follow");
  var pause = document.getElementById("f-pause");
  if (!log) { return; }
  var paused = false;
  var pending = [];
  var seen = new Set();
  var received = 0;
  var signatures = [];
  try {
    (JSON.parse(log.dataset.signatures || "[]") || []).forEach(function (sig) {
      try { signatures.push({ name: sig.name, fatal: sig.fatal, re: new RegExp(sig.pattern) }); } catch (e) { /* not JS syntax: skip */ }
    });
  } catch (e) { /* no catalogue */ }

  function signatureOf(text) {
    for (var i = 0; i < signatures.length; i++) {
      if (signatures[i].re.test(text)) { return signatures[i]; }
    }
    return null;
  }
  for (var i = 0; i < log.children.length; i++) {
    if (log.children[i].dataset.key) { seen.add(log.children[i].dataset.key); }
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  // keyOf matches the data-key of the lines the server rendered, so that
  // the history the stream replays first is not shown twice.
  function keyOf(l) {
    var ms = Date.parse(l.time);
    return (isNaN(ms) ? "" : ms) + "|" + (typeof l.seq === "number" ? l.seq : -1) + "|" + (l.text || "");
  }

  function pad(n, w) { n = String(n); while (n.length < w) { n = "0" + n; } return n; }

  function timeOf(l) {
    if (typeof l.ktime_us === "number" && l.ktime_us >= 0) {
      var s = Math.floor(l.ktime_us / 1e6), us = l.ktime_us % 1e6;
      return "[" + s + "." + pad(us, 6) + "]";
    }
    var d = new Date(l.time);
    if (isNaN(d)) { return ""; }
    return pad(d.getUTCHours(), 2) + ":" + pad(d.getUTCMinutes(), 2) + ":" + pad(d.getUTCSeconds(), 2) + "." + pad(d.getUTCMilliseconds(), 3);
  }

  function matcher() {
    var re = null;
    grep.removeAttribute("aria-invalid");
    if (grep.value) {
      try { re = new RegExp(grep.value, "i"); } catch (e) { grep.setAttribute("aria-invalid", "true"); }
    }
    var max = level.value === "" ? null : Number(level.value);
    return function (li) {
      if (re && !re.test(li.querySelector(".txt").textContent)) { return false; }
      if (max !== null) {
        var lv = LEVELS.indexOf(li.dataset.level);
        if (lv < 0 || lv > max) { return false; }
      }
      return true;
    };
  }
  var match = matcher();

  function refilter() {
    match = matcher();
    var items = log.children;
    for (var i = 0; i < items.length; i++) { items[i].hidden = !match(items[i]); }
  }

  function render(l) {
    var li = document.createElement("li");
    var lv = (typeof l.level === "number" && l.level >= 0 && l.level < LEVELS.length) ? LEVELS[l.level] : "";
    li.className = "line new" + (lv ? " lvl-" + lv : "");
    li.dataset.level = lv;
    if (l.boot_id) { li.dataset.bootId = l.boot_id; }
    var t = document.createElement("span"); t.className = "t"; t.textContent = timeOf(l);
    li.appendChild(t);
    if (lv) {
      var s = document.createElement("span"); s.className = "lvl"; s.textContent = lv;
      li.appendChild(document.createTextNode(" ")); li.appendChild(s);
    }
    var x = document.createElement("span"); x.className = "txt"; x.textContent = l.text || "";
    li.appendChild(document.createTextNode(" ")); li.appendChild(x);
    var sig = signatureOf(l.text || "");
    if (sig) {
      li.classList.add("sigline");
      if (sig.fatal) { li.classList.add("sig-fatal"); }
      li.dataset.signature = sig.name;
      var m = document.createElement("span"); m.className = "siglabel"; m.textContent = "◀ signature " + sig.name;
      li.appendChild(document.createTextNode(" ")); li.appendChild(m);
    }
    li.hidden = !match(li);
    return li;
  }

  function append(lines) {
    var frag = document.createDocumentFragment();
    lines.forEach(function (l) { frag.appendChild(render(l)); });
    log.appendChild(frag);
    while (log.children.length > MAX_LINES) { log.removeChild(log.firstChild); }
    if (follow.checked) { log.scrollTop = log.scrollHeight; }
  }

  function onData(ev) {
    var l;
    try { l = JSON.parse(ev.data); } catch (e) { l = { text: String(ev.data) }; }
    if (Array.isArray(l)) { l.forEach(function (x) { onLine(x); }); return; }
    onLine(l);
  }

  function onLine(l) {
    if (!l || typeof l !== "object") { return; }
    var k = keyOf(l);
    if (seen.has(k)) { return; }
    seen.add(k);
    received++;
    log.dataset.received = received;
    if (paused) { pending.push(l); pause.textContent = "Resume (" + pending.length + " new)"; return; }
    append([l]);
  }

  grep.addEventListener("input", refilter);
  level.addEventListener("change", refilter);
  pause.addEventListener("click", function () {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) { append(pending); pending = []; }
    pause.textContent = paused ? "Resume" : "Pause";
  });

  var url = log.dataset.stream;
  if (!url || !window.EventSource) { setStatus("error", "Live streaming is not available in this browser."); return; }
  var es = new EventSource(url);
  es.onopen = function () { setStatus("live", "Following live."); };
  es.onmessage = onData;
  ["line", "log"].forEach(function (name) { es.addEventListener(name, onData); });
  // The API says when this follower was too slow and lines were dropped.
  es.addEventListener("lagged", function (ev) {
    var n = 0;
    try { n = JSON.parse(ev.data).dropped || 0; } catch (e) { /* keep 0 */ }
    setStatus("live", "Following live; " + n + " lines were dropped because this page fell behind (netbootctl logs shows them).");
  });
  es.onerror = function () {
    setStatus(es.readyState === EventSource.CLOSED ? "error" : "connecting",
      es.readyState === EventSource.CLOSED ? "The log stream closed." : "Reconnecting to the log stream…");
  };
})();
