// tether ui: the desk's one script (no inline scripts; CSP script-src 'self').
// 1. Draws the Plotly charts (div.chart[data-figure]) with the plotly.min.js the console serves from the
//    `plotly` package.
// 2. Keeps a page current while runs move: polls /live (a digest of what the pages show) and, when it changes,
//    fetches the page again and swaps in each section marked data-live whose HTML changed. A section the
//    reader is typing in is left alone, and open <details> stay open.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var served = {};  // section id -> the HTML the server last sent for it

  function draw(root) {
    if (!window.Plotly) { return; }
    root.querySelectorAll("div.chart[data-figure]").forEach(function (el) {
      if (el.dataset.drawn) { return; }
      var fig = JSON.parse(el.dataset.figure);
      el.dataset.drawn = "1";
      window.Plotly.newPlot(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
    });
  }

  function busy(section) {
    var active = document.activeElement;
    if (active && section.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) { return true; }
    return Array.prototype.some.call(section.querySelectorAll("textarea, input:not([type=hidden])"), function (f) {
      return f.type === "checkbox" ? f.checked !== f.defaultChecked : f.value !== f.defaultValue;
    });
  }

  function openKeys(section) {
    var keys = {};
    section.querySelectorAll("details[data-key]").forEach(function (d) { keys[d.dataset.key] = d.open; });
    return keys;
  }

  function swap(doc) {
    document.querySelectorAll("[data-live]").forEach(function (section) {
      var fresh = doc.getElementById(section.id);
      if (!fresh || fresh.innerHTML === served[section.id] || busy(section)) { return; }
      var open = openKeys(section);
      served[section.id] = fresh.innerHTML;
      section.innerHTML = fresh.innerHTML;
      section.querySelectorAll("details[data-key]").forEach(function (d) {
        if (d.dataset.key in open) { d.open = open[d.dataset.key]; }
      });
      draw(section);
    });
    var count = doc.querySelector("header.top nav");
    if (count) { document.querySelector("header.top nav").innerHTML = count.innerHTML; }
  }

  function refresh() {
    return fetch(document.body.dataset.pageUrl || location.href, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html) { swap(new DOMParser().parseFromString(html, "text/html")); }
    });
  }

  function start() {
    var page = document.body.dataset.pageUrl;
    if (page && page !== location.pathname + location.search) {
      history.replaceState(null, "", page);  // after a form's POST: a reload shows the page, it does not post again
    }
    document.querySelectorAll("[data-live]").forEach(function (s) { served[s.id] = s.innerHTML; });
    draw(document);
    var url = document.body.dataset.liveUrl;
    if (!url || !document.querySelector("[data-live]")) { return; }
    var version = null;
    var polling = false;
    window.setInterval(function () {
      if (polling) { return; }
      polling = true;
      fetch(url, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
        return r.ok ? r.json() : null;
      }).then(function (live) {
        if (!live) { return null; }
        var changed = version !== null && live.version !== version;
        version = live.version;
        return changed ? refresh() : null;
      }).catch(function () { /* the console stopped or restarted: the page stays as it is */ })
        .then(function () { polling = false; });
    }, POLL_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
