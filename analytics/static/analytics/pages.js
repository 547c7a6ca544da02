/* SaaSTracker analytics pages: charts from the JSON the server embeds, the live stream's controls,
   and small conveniences. No inline scripts (the pages' Content-Security-Policy forbids them). */
(function () {
  "use strict";

  var PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6", "#64748b"];
  var numberFormat = new Intl.NumberFormat("en-US");

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function drawChart(canvas) {
    if (canvas.dataset.drawn || typeof window.Chart === "undefined") {
      return;
    }
    var spec = readJson(canvas.dataset.chart);
    if (!spec) {
      return;
    }
    canvas.dataset.drawn = "1";
    var loading = canvas.parentNode.querySelector(".chart-loading");
    if (loading) {
      loading.remove();
    }
    var horizontal = spec.kind === "hbar";
    var datasets = spec.datasets.map(function (ds, i) {
      var color = PALETTE[i % PALETTE.length];
      return {
        label: ds.label,
        data: ds.data,
        borderColor: color,
        backgroundColor: spec.kind === "line" ? color + "22" : color,
        fill: spec.kind === "line" && spec.datasets.length === 1,
        tension: 0,
        pointRadius: spec.labels.length > 45 ? 0 : 2,
        borderWidth: 2,
        yAxisID: ds.axis || "y",
      };
    });
    var percent = spec.format === "percent";
    var valueTick = function (v) {
      return percent ? Math.round(v * 100) + " %" : numberFormat.format(v);
    };
    var scales = {
      x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12 } },
      y: { beginAtZero: true, ticks: { precision: 0, callback: valueTick } },
    };
    if (horizontal) {
      scales = {
        x: { beginAtZero: true, max: percent ? 1 : undefined, ticks: { callback: valueTick } },
        y: { grid: { display: false } },
      };
    }
    if (spec.datasets.some(function (ds) { return ds.axis === "y2"; })) {
      scales.y2 = { beginAtZero: true, position: "right", grid: { display: false }, ticks: { precision: 0 } };
    }
    new window.Chart(canvas, {
      type: spec.kind === "line" ? "line" : "bar",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        indexAxis: horizontal ? "y" : "x",
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: spec.datasets.length > 1, position: "bottom" },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var v = horizontal ? ctx.parsed.x : ctx.parsed.y;
                return ctx.dataset.label + ": " + valueTick(v);
              },
            },
          },
        },
        scales: scales,
      },
    });
  }

  function drawCharts(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(drawChart);
  }

  /* Menus (<details>): Escape or a click elsewhere closes them. */
  function wireMenus() {
    var menus = document.querySelectorAll("details.menu");
    document.addEventListener("click", function (evt) {
      menus.forEach(function (menu) {
        if (menu.open && !menu.contains(evt.target)) {
          menu.open = false;
        }
      });
    });
    document.addEventListener("keydown", function (evt) {
      if (evt.key !== "Escape") {
        return;
      }
      menus.forEach(function (menu) {
        if (menu.open) {
          menu.open = false;
          menu.querySelector("summary").focus();
        }
      });
    });
  }

  /* Narrow screens: the sections collapse behind a button (the CSS hides them only once this runs). */
  function wireNav() {
    var nav = document.getElementById("sections-nav");
    var toggle = nav && nav.querySelector(".nav-toggle");
    if (!toggle) {
      return;
    }
    var current = nav.querySelector('a[aria-current="page"]');
    if (current) {
      toggle.textContent = "Sections: " + current.textContent;
    }
    toggle.addEventListener("click", function () {
      var open = !nav.classList.contains("open");
      nav.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  /* Live stream: htmx polls the newest rows; we tell it what we already show and pause on demand. */
  function wireStream() {
    var list = document.getElementById("stream-list");
    if (!list) {
      return;
    }
    var toggle = document.getElementById("stream-toggle");
    var status = document.getElementById("stream-status");
    var paused = false;
    function setPaused(value) {
      paused = value;
      toggle.textContent = paused ? "Resume" : "Pause";
      toggle.setAttribute("aria-pressed", paused ? "true" : "false");
      status.classList.toggle("paused", paused);
      status.querySelector(".state").textContent = paused ? "Paused" : "Live";
    }
    if (toggle) {
      toggle.addEventListener("click", function () { setPaused(!paused); });
    }
    list.addEventListener("htmx:configRequest", function (evt) {
      if (paused) {
        evt.preventDefault();
        return;
      }
      var first = list.querySelector("li[data-received]");
      if (first) {
        var newest = first.dataset.received;
        evt.detail.parameters.since = newest;
        var seen = [];
        list.querySelectorAll('li[data-received="' + CSS.escape(newest) + '"]').forEach(function (li) {
          seen.push(li.dataset.key);
        });
        evt.detail.parameters.seen = seen;
      }
    });
    list.addEventListener("htmx:afterRequest", function (evt) {
      // 204: the server could not read the stream this time; the next poll tries again.
      var failed = !evt.detail.successful || evt.detail.xhr.status !== 200;
      status.classList.toggle("stream-retrying", failed && !paused);
      status.querySelector(".state").textContent = paused ? "Paused" : failed ? "Retrying…" : "Live";
    });
    list.addEventListener("htmx:afterSwap", function () {
      var empty = document.getElementById("stream-empty");
      if (empty && list.querySelector("li[data-received]")) {
        empty.hidden = true;
      }
    });
  }

  /* Explorer: show the fields of the chosen source only; say that a submitted query is running. */
  /* Funnels and Retention: say that a submitted query is running; breakdown fields of the chosen source. */
  function wireSequences() {
    ["funnel-form", "retention-form"].forEach(function (id) {
      var form = document.getElementById(id);
      if (!form) {
        return;
      }
      form.addEventListener("submit", function (evt) {
        var run = evt.submitter;
        if (run && run.name === "run") {
          run.textContent = "Running…";
          run.setAttribute("aria-busy", "true");
          form.setAttribute("aria-busy", "true");
        }
      });
    });
    var source = document.getElementById("f-source");
    if (!source) {
      return;
    }
    function sync() {
      document.querySelectorAll("#f-breakdown [data-source-field]").forEach(function (option) {
        var show = option.dataset.sourceField === source.value;
        option.hidden = !show;
        option.disabled = !show;
      });
    }
    source.addEventListener("change", sync);
    sync();
  }

  function wireExplorer() {
    var source = document.getElementById("q-source");
    if (!source) {
      return;
    }
    var form = document.getElementById("explorer-form");
    form.addEventListener("submit", function () {
      var run = document.getElementById("q-run");
      run.textContent = "Running…";
      run.setAttribute("aria-busy", "true");
      form.setAttribute("aria-busy", "true");
    });
    function sync() {
      document.querySelectorAll("[data-source-field]").forEach(function (option) {
        var show = option.dataset.sourceField === source.value;
        option.hidden = !show;
        option.disabled = !show;
      });
    }
    source.addEventListener("change", sync);
    sync();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    drawCharts(document);
    wireMenus();
    wireNav();
    wireStream();
    wireExplorer();
    wireSequences();
  });
})();
