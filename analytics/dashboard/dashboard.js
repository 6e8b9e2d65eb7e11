// The RetailMind dashboard: reads the analyses (the SQL under analytics/sql/, run by the
// server) and the live panel, and draws them with Chart.js. Plain script, no build step.
"use strict";

(function () {
  const ANALYSES = ["sales_trend", "conversion_funnel", "traffic_sources", "product_performance", "rfm_segments", "rec_attribution"];
  const charts = {};
  let loads = 0;
  let started = 0;
  let timer = null;

  // The token travels in the fragment, which the browser never sends; kept for this tab only.
  const hashToken = new URLSearchParams(location.hash.slice(1)).get("token");
  if (hashToken) sessionStorage.setItem("retailmind-dashboard-token", hashToken);
  const token = sessionStorage.getItem("retailmind-dashboard-token");

  const day = (d) => d.toISOString().slice(0, 10);
  const params = new URLSearchParams(location.search);
  // Seconds between refreshes; `?refresh=` lets a wall screen (or a test) pick its own pace.
  const REFRESH_MS = Math.max(1, Number(params.get("refresh")) || 10) * 1000;
  const form = document.getElementById("range");
  const today = new Date();
  form.from.value = params.get("from") || day(new Date(today.getTime() - 29 * 86400000));
  form.to.value = params.get("to") || day(today);

  async function getJson(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    // A request that never settles must not stop the refreshes, which wait for the last load.
    const signal = AbortSignal.timeout(Math.max(30000, 3 * REFRESH_MS));
    const res = await fetch(path, { headers, signal });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(path + ": " + (body.error || res.status));
    return body;
  }

  const number = new Intl.NumberFormat("en");
  const percent = (x) => (x == null ? "–" : (x * 100).toFixed(1) + "%");
  const money = (minor, currency) =>
    new Intl.NumberFormat("en", { style: "currency", currency: currency || "EUR" }).format(minor / 100);

  function draw(id, config) {
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update("none");
    } else {
      config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: true }, config.options);
      charts[id] = new Chart(document.getElementById(id), config);
    }
  }

  function fillTable(id, rows) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren(
      ...rows.map((cells) => {
        const tr = document.createElement("tr");
        // A cell is its text, or [text, value] to keep the unformatted figure in data-value.
        for (const c of cells) {
          const td = document.createElement("td");
          const [text, value] = Array.isArray(c) ? c : [c, c];
          td.textContent = text;
          td.dataset.value = value;
          tr.append(td);
        }
        return tr;
      }),
    );
  }

  function show(id, text, value) {
    const el = document.getElementById(id);
    el.textContent = text;
    el.dataset.value = value;
  }

  // The currency with the most revenue leads the tiles and the trend; others are listed after.
  function salesByCurrency(rows) {
    const by = new Map();
    for (const r of rows) {
      const c = r.currency || "EUR";
      const s = by.get(c) || { currency: c, orders: 0, revenue: 0, days: [] };
      s.orders += r.orders;
      s.revenue += r.revenue_minor;
      s.days.push(r);
      by.set(c, s);
    }
    return [...by.values()].sort((a, b) => b.revenue - a.revenue);
  }

  function render(data) {
    const sales = salesByCurrency(data.sales_trend);
    const lead = sales[0] || { currency: "EUR", orders: 0, revenue: 0, days: [] };
    const orders = sales.reduce((n, s) => n + s.orders, 0);
    show("kpi-orders", number.format(orders), orders);
    show(
      "kpi-revenue",
      sales.length ? sales.map((s) => money(s.revenue, s.currency)).join(" · ") : money(0, "EUR"),
      lead.revenue,
    );
    show("kpi-aov", lead.orders ? money(lead.revenue / lead.orders, lead.currency) : "–", lead.orders ? lead.revenue / lead.orders : "");

    draw("chart-sales", {
      type: "bar",
      data: {
        labels: lead.days.map((r) => r.dt),
        datasets: [
          { type: "line", label: "Revenue (" + lead.currency + ")", data: lead.days.map((r) => r.revenue_minor / 100), yAxisID: "y", borderColor: "#2f6fdf", backgroundColor: "#2f6fdf" },
          { type: "bar", label: "Orders", data: lead.days.map((r) => r.orders), yAxisID: "y1", backgroundColor: "#9bc1ff" },
        ],
      },
      options: { scales: { y: { position: "left", beginAtZero: true }, y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } },
    });

    const funnel = data.conversion_funnel;
    draw("chart-funnel", {
      type: "bar",
      data: { labels: funnel.map((s) => s.name), datasets: [{ label: "Visitors", data: funnel.map((s) => s.visitors), backgroundColor: "#2f9f7f" }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } } },
    });
    fillTable("table-funnel", funnel.map((s) => [s.name, number.format(s.visitors), s.dropped == null ? "–" : number.format(s.dropped), percent(s.drop_off_rate)]));

    const traffic = data.traffic_sources;
    draw("chart-traffic", {
      type: "doughnut",
      data: { labels: traffic.map((t) => t.source + " / " + t.medium), datasets: [{ label: "Sessions", data: traffic.map((t) => t.sessions) }] },
      options: { plugins: { legend: { position: "right" } } },
    });
    fillTable("table-traffic", traffic.map((t) => [t.source + " / " + t.medium, number.format(t.sessions), number.format(t.orders), percent(t.conversion_rate)]));

    // Rows are per currency: the charts show the leading one's (and views without a price).
    const inLead = (r) => !r.currency || r.currency === lead.currency;
    const products = data.product_performance.filter(inLead).sort((a, b) => b.revenue_minor - a.revenue_minor || b.views - a.views).slice(0, 10);
    draw("chart-products", {
      type: "bar",
      data: {
        labels: products.map((p) => p.product_id),
        datasets: [{ label: "Revenue (" + lead.currency + ")", data: products.map((p) => p.revenue_minor / 100), backgroundColor: "#2f6fdf" }],
      },
      options: { plugins: { legend: { display: false } } },
    });
    fillTable("table-products", products.map((p) => [p.product_id, number.format(p.views), percent(p.add_to_cart_rate), number.format(p.orders), percent(p.conversion_rate), money(p.revenue_minor, lead.currency)]));

    const rfm = data.rfm_segments.filter(inLead);
    draw("chart-rfm", {
      type: "bar",
      data: { labels: rfm.map((s) => s.segment), datasets: [{ label: "Customers", data: rfm.map((s) => s.customers), backgroundColor: "#d9822b" }] },
      options: { plugins: { legend: { display: false } } },
    });

    fillTable(
      "table-recs",
      data.rec_attribution.map((r) => [
        r.placement,
        r.strategy,
        [number.format(r.impressions), r.impressions],
        [number.format(r.clicks), r.clicks],
        [percent(r.ctr), r.ctr],
        [money(r.revenue_minor, lead.currency), r.revenue_minor],
      ]),
    );
  }

  function renderLive(live) {
    show("live-visitors", number.format(live.active_visitors), live.active_visitors);
  }

  async function load() {
    const status = document.getElementById("status");
    const range = form.from.value + ".." + form.to.value;
    const q = "?from=" + form.from.value + "&to=" + form.to.value;
    // A slow refresh must not paint over the answer to a newer request (a range just submitted).
    const ticket = ++started;
    // Nor may a pending refresh overtake this load: the next is scheduled when it ends.
    clearTimeout(timer);
    try {
      const [live, job, ...results] = await Promise.all([
        getJson("/api/live"),
        getJson("/api/status"),
        ...ANALYSES.map((a) => getJson("/api/analyses/" + a + q)),
      ]);
      if (ticket !== started) return;
      const data = {};
      ANALYSES.forEach((a, i) => (data[a] = results[i].rows));
      render(data);
      renderLive(live);
      loads += 1;
      document.body.dataset.loads = String(loads);
      document.body.dataset.range = range;
      const ran = job.last_run_ms ? new Date(job.last_run_ms).toLocaleTimeString() : "not yet";
      status.textContent = "Lake updated " + ran + (job.last_error ? " (last run failed: " + job.last_error + ")" : "") + " · shown " + new Date().toLocaleTimeString();
      status.classList.toggle("error", Boolean(job.last_error));
    } catch (e) {
      if (ticket !== started) return;
      status.textContent = String(e.message || e);
      status.classList.add("error");
    } finally {
      if (ticket === started) schedule();
    }
  }

  // The next refresh is counted from the end of the newest load, not on a fixed beat: on a
  // fixed beat, a server slower than the interval has every load overtaken by the next one,
  // and the page never shows anything new.
  function schedule() {
    clearTimeout(timer);
    timer = form.auto.checked ? setTimeout(load, REFRESH_MS) : null;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const url = new URL(location.href);
    url.searchParams.set("from", form.from.value);
    url.searchParams.set("to", form.to.value);
    history.replaceState(null, "", url);
    load();
  });
  form.auto.addEventListener("change", schedule);
  load();
})();
