// The operator dashboard: polls the operator API every 2 s and renders its panels.
// No framework and no build step; every value from the API is written as text, never as HTML.
"use strict";

(() => {
  const REFRESH_MS = 2000;
  const TOKEN_KEY = "topup.operator.token";

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let query = "";           // the order search shown in the timeline panel
  let confirmingAll = false; // "Replay all" asks once before it acts
  let replayAllButton = null;

  // ---- building the page ------------------------------------------------------------

  /** An element with attributes and children; strings become text nodes. */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "className") el.className = value;
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function fill(tbody, rows, empty, columns) {
    tbody.replaceChildren(
      ...(rows.length ? rows : [h("tr", { className: "empty" }, h("td", { colspan: columns }, empty))]),
    );
  }

  function money(total) {
    if (!total) return "-";
    const minor = Math.abs(total.amount_minor);
    const sign = total.amount_minor < 0 ? "-" : "";
    return `${sign}${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, "0")} ${total.currency}`;
  }

  /** "17:21:05" (UTC, as the API and the logs); the full timestamp in the tooltip. */
  function clock(ts) {
    if (!ts) return h("span", {}, "-");
    const when = new Date(ts);
    const text = Number.isNaN(when.getTime()) ? ts : when.toISOString().slice(11, 19);
    return h("time", { datetime: ts, title: ts }, text);
  }

  function clockWithMillis(ts) {
    const when = new Date(ts);
    const text = Number.isNaN(when.getTime()) ? ts : when.toISOString().slice(11, 23);
    return h("time", { datetime: ts, title: ts }, text);
  }

  function seconds(s) {
    const n = Math.round(s);
    return n < 120 ? `${n} s` : `${Math.floor(n / 60)} min ${n % 60} s`;
  }

  const shortId = (id) => (id && id.length > 13 ? `${id.slice(0, 8)}…` : id || "-");

  // ---- talking to the API -----------------------------------------------------------

  class Refused extends Error {}

  async function api(path, options = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const response = await fetch(path, {
      ...options,
      headers: {
        Accept: "application/json",
        ...(options.body ? { "Content-Type": "application/json" } : {}),
        Authorization: `Bearer ${token}`,
      },
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.status === 401) throw new Refused(detail(body) || "the token was not accepted");
    return { status: response.status, ok: response.ok, body };
  }

  function detail(body) {
    if (!body || body.detail === undefined) return "";
    if (typeof body.detail === "string") return body.detail;
    return body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  }

  // ---- signing in -------------------------------------------------------------------

  function tokenFromUrl() {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!match) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    // The token leaves the address bar (and the history) at once.
    history.replaceState(null, "", location.pathname + location.search);
  }

  function showSignIn(message) {
    clearTimeout(timer);
    timer = null;
    $("dashboard").hidden = true;
    $("sign-out").hidden = true;
    $("operator").textContent = "";
    $("refreshed").textContent = "";
    $("problem").hidden = true;
    $("signin").hidden = false;
    $("signin-error").hidden = !message;
    $("signin-error").textContent = message || "";
    $("token-input").focus();
  }

  async function signIn() {
    if (!sessionStorage.getItem(TOKEN_KEY)) {
      showSignIn("");
      return;
    }
    try {
      const { ok, status, body } = await api("/api/whoami");
      if (!ok) throw new Error(`whoami answered ${status}: ${detail(body)}`);
      $("operator").textContent = `signed in as ${body.operator}`;
    } catch (error) {
      if (error instanceof Refused) {
        sessionStorage.removeItem(TOKEN_KEY);
        showSignIn(`Token refused: ${error.message}`);
      } else {
        showSignIn(`Cannot reach the operator API: ${error.message}`);
      }
      return;
    }
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    $("sign-out").hidden = false;
    refresh();
  }

  // ---- the panels -------------------------------------------------------------------

  function renderTopics(data) {
    $("topics-window").textContent = `rates over ${data.window_s} s`;
    const rows = data.topics.map((topic) => {
      const lagging = topic.consumer_groups.some((g) => g.lag > 0);
      const troubled = topic.dead_letter && topic.end_offset > 0;
      return h(
        "tr",
        {
          "data-testid": "topic-row",
          "data-topic": topic.name,
          className: [troubled ? "dead-letters-waiting" : "", lagging ? "lagging" : ""].join(" ").trim(),
        },
        h("td", { className: "name" }, topic.name, topic.dead_letter ? h("span", { className: "tag" }, "dead letters") : null),
        h("td", { className: "num", "data-testid": "end-offset" }, topic.end_offset),
        h("td", { className: "num" }, topic.rate_per_s.toFixed(1)),
        replicasCell(topic),
        h("td", {}, topic.partitions.map((p) =>
          h("span", { className: "part", title: partitionTitle(p) }, `p${p.partition}: ${p.end_offset}`))),
        h("td", {}, topic.consumer_groups.length
          ? topic.consumer_groups.map((g) =>
            h("div", { className: g.lag > 0 ? "group lag" : "group", "data-testid": "group" },
              h("span", { className: "group-name" }, g.group),
              h("span", { className: "lag-value", title: g.partitions.map((p) => `p${p.partition}: committed ${p.committed}, lag ${p.lag}`).join("\n") },
                `lag ${g.lag}`)))
          : h("span", { className: "muted" }, "no consumer group")),
      );
    });
    fill($("topics-rows"), rows, "no topics yet", 6);
  }

  /** "3 (3 in sync)"; warned when a partition has fewer in sync than it has, or no leader. */
  function replicasCell(topic) {
    if (topic.replication_factor == null) return h("td", { className: "muted" }, "-");
    const troubles = [];
    if (topic.offline_partitions) troubles.push(`${topic.offline_partitions} offline`);
    if (topic.under_replicated_partitions) troubles.push(`${topic.under_replicated_partitions} under-replicated`);
    return h("td", { className: troubles.length ? "warn" : "", "data-testid": "replicas" },
      `${topic.replication_factor} (${topic.in_sync_replicas} in sync)`,
      troubles.length ? h("div", { className: "under-replicated" }, troubles.join(", ")) : null);
  }

  function partitionTitle(p) {
    const rate = `${p.rate_per_s.toFixed(1)} msg/s`;
    return p.leader == null ? rate : `${rate}; leader broker ${p.leader}, ${p.in_sync} of ${p.replicas} replicas in sync`;
  }

  /** ok, degraded (a stuck partition, a failing relay, parked outbox rows), unavailable. */
  function renderServices(data) {
    const rows = data.services.map((service) =>
      h("tr", { "data-testid": "service-row", "data-service": service.service, "data-status": service.status },
        h("td", {}, service.service),
        h("td", { className: service.status === "ok" ? "fine" : "warn" }, service.status),
        h("td", { className: "wrap" }, service.problems.length ? service.problems.join("; ") : "-")));
    fill($("services-rows"), rows, "no services", 3);
  }

  function renderSagas(data) {
    $("sagas-total").textContent = `${data.total} orders`;
    const states = Object.entries(data.by_state).sort((a, b) => b[1] - a[1]);
    $("saga-states").replaceChildren(
      ...(states.length
        ? states.map(([state, count]) =>
          h("span", { className: `chip state-${state}${count ? "" : " zero"}`, "data-testid": "saga-count", "data-state": state },
            h("b", {}, count), ` ${state}`))
        : [h("span", { className: "muted" }, "no orders yet")]),
    );
    $("stuck-title").textContent = data.stuck.length
      ? `${data.stuck.length} stuck (no step for over ${data.stuck_after_s} s)`
      : `nothing stuck for over ${data.stuck_after_s} s`;
    $("stuck-title").className = data.stuck.length ? "warn" : "fine";
    const rows = data.stuck.map((saga) =>
      h("tr", { "data-testid": "stuck-row", "data-order-id": saga.order_id },
        h("td", {}, h("a", { href: "#", className: "order-link", title: saga.order_id, onclick: (e) => { e.preventDefault(); search(saga.order_id); } }, saga.order_id)),
        h("td", {}, saga.state),
        h("td", { className: "mono" }, saga.iccid),
        h("td", { className: "num" }, `waiting for ${seconds(saga.waiting_s)}`)));
    fill($("stuck-rows"), rows, "none", 4);
  }

  function renderAudit(data) {
    const rows = data.entries.map((entry) =>
      h("tr", { "data-testid": "audit-row", className: entry.outcome === "ok" ? "" : "failed" },
        h("td", {}, clock(entry.at)),
        h("td", {}, entry.operator),
        h("td", {}, entry.action),
        h("td", { className: "mono wrap", title: entry.detail ? JSON.stringify(entry.detail) : "" }, entry.target),
        h("td", {}, entry.outcome)));
    fill($("audit-rows"), rows, "no actions yet", 5);
  }

  function renderDeadLetters(data) {
    const letters = data.dead_letters;
    $("dead-letters-count").textContent = `${letters.length} shown`;
    const waiting = letters.filter((l) => !l.replayed_by).length;
    replayAllButton.disabled = waiting === 0;
    const rows = letters.map((letter) =>
      h("tr", { "data-testid": "dead-letter-row", "data-id": letter.id, className: letter.replayed_by ? "replayed" : "" },
        h("td", {}, clock(letter.failed_at)),
        h("td", { className: "mono", title: letter.id }, letter.topic, h("div", { className: "muted" }, `p${letter.partition} @ ${letter.offset}`)),
        h("td", {}, h("span", { className: "reason" }, letter.reason)),
        h("td", { title: letter.error }, h("div", { className: "wrap error-text" }, letter.error)),
        h("td", {}, letter.order_id
          ? h("a", { href: "#", className: "order-link", title: letter.order_id, onclick: (e) => { e.preventDefault(); search(letter.order_id); } }, shortId(letter.order_id))
          : h("span", { className: "muted" }, "-"),
        letter.type ? h("div", { className: "muted" }, letter.type) : null),
        h("td", { className: "mono wrap preview" }, letter.payload_preview),
        h("td", { className: "action" }, letter.replayed_by
          ? h("span", { className: "done", "data-testid": "replayed-by" }, `replayed by ${letter.replayed_by}`, letter.replayed_at ? h("div", { className: "muted" }, clock(letter.replayed_at)) : null)
          : h("button", { type: "button", "data-testid": "replay", onclick: () => replay({ ids: [letter.id] }) }, "Replay"))));
    fill($("dead-letter-rows"), rows, "no dead letters", 7);
  }

  async function replay(body) {
    const note = $("replay-message");
    try {
      const { ok, body: answer } = await api("/api/dead-letters/replay", { method: "POST", body: JSON.stringify(body) });
      note.hidden = false;
      if (ok) {
        note.className = "note";
        note.textContent = `${answer.replayed.length} dead letter(s) replayed by ${answer.by}`;
      } else {
        note.className = "note error";
        note.textContent = `Replay refused: ${detail(answer)}`;
      }
      refresh();
    } catch (error) {
      if (error instanceof Refused) return showSignIn(`Token refused: ${error.message}`);
      note.hidden = false;
      note.className = "note error";
      note.textContent = `Replay failed: ${error.message}`;
    }
  }

  function renderReplayAll() {
    const area = $("replay-all-area");
    if (!confirmingAll) {
      area.replaceChildren(replayAllButton);
      return;
    }
    area.replaceChildren(
      h("span", {}, "Replay every dead letter? "),
      h("button", { type: "button", "data-testid": "replay-all-confirm", onclick: () => { confirmingAll = false; renderReplayAll(); replay({ all: true }); } }, "Yes, replay all"),
      h("button", { type: "button", className: "quiet", onclick: () => { confirmingAll = false; renderReplayAll(); } }, "Cancel"),
    );
  }

  // ---- the order timeline -----------------------------------------------------------

  function search(q) {
    query = q.trim();
    $("search-input").value = query;
    showOrders().catch((error) => {
      if (error instanceof Refused) showSignIn(`Token refused: ${error.message}`);
      else $("search-results").replaceChildren(h("p", { className: "note error" }, `Search failed: ${error.message}`));
    });
    $("timeline").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  async function showOrders() {
    const results = $("search-results");
    if (!query) {
      results.replaceChildren(h("p", { className: "muted" }, "Find an order by its id, its request id or its line."));
      return;
    }
    const asked = query;
    const { status, body } = await api(`/api/orders/search?q=${encodeURIComponent(asked)}`);
    if (asked !== query) return; // a newer search went out meanwhile
    if (status === 404) {
      results.replaceChildren(h("p", { className: "note", "data-testid": "search-none" }, `No order matches “${asked}”.`));
      return;
    }
    if (status !== 200) {
      results.replaceChildren(h("p", { className: "note error" }, `Search failed (${status}): ${detail(body)}`));
      return;
    }
    results.replaceChildren(
      h("p", { className: "muted" }, `${body.orders.length} order(s) by ${body.kind.replace("_", " ")}`),
      ...body.orders.map(orderCard),
    );
  }

  function orderCard(order) {
    return h("article", { className: "order", "data-testid": "order", "data-order-id": order.order_id },
      h("header", {},
        h("span", { className: `state state-${order.state}`, "data-testid": "order-state" }, order.state),
        h("span", { className: "mono" }, order.order_id),
        h("span", {}, order.package_id || "-"),
        h("b", {}, money(order.total)),
        h("span", { className: "muted" }, `request ${order.request_id} · line ${order.iccid}`)),
      h("div", { className: "columns" },
        h("div", {},
          h("h4", {}, "Transitions"),
          h("ol", { className: "transitions" }, order.transitions.map((t) =>
            h("li", {}, clockWithMillis(t.at), " ", h("b", {}, t.state), h("span", { className: "muted" }, ` ${t.cause || ""}`))))),
        h("div", {},
          h("h4", {}, `Messages across topics (${order.timeline.length})`),
          h("table", { className: "messages" },
            h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "topic"), h("th", {}, "p @ offset"), h("th", {}, "type"), h("th", {}, "summary"))),
            h("tbody", {}, order.timeline.map((m) =>
              h("tr", { "data-testid": "message-row", className: m.topic.endsWith(".dlt") ? "dead" : "" },
                h("td", {}, clockWithMillis(m.timestamp)),
                h("td", { className: "mono" }, m.topic),
                h("td", { className: "num" }, `${m.partition} @ ${m.offset}`),
                h("td", { "data-testid": "message-type" }, h("b", {}, m.type || "?")),
                h("td", { className: "wrap" }, m.summary || ""))))))));
  }

  // ---- the refresh loop -------------------------------------------------------------

  const PANELS = [
    ["/api/services", renderServices],
    ["/api/topics", renderTopics],
    ["/api/sagas", renderSagas], // "stuck" after the service's STUCK_AFTER_S
    ["/api/dead-letters?limit=200", renderDeadLetters],
    ["/api/audit?limit=100", renderAudit],
  ];

  async function refresh() {
    clearTimeout(timer);
    const failures = [];
    try {
      await Promise.all([
        ...PANELS.map(async ([path, render]) => {
          const { ok, status, body } = await api(path);
          if (ok) render(body);
          else failures.push(`${path} answered ${status} ${detail(body)}`);
        }),
        showOrders(),
      ]);
    } catch (error) {
      if (error instanceof Refused) {
        sessionStorage.removeItem(TOKEN_KEY);
        return showSignIn(`Token refused: ${error.message}`);
      }
      failures.push(error.message);
    }
    $("problem").hidden = failures.length === 0;
    $("problem").textContent = failures.length ? `Some panels could not refresh: ${failures.join("; ")}` : "";
    $("refreshed").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
    timer = setTimeout(refresh, REFRESH_MS);
  }

  // ---- wiring -----------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
      $("token-input").value = "";
      signIn();
    });
    $("sign-out").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn("Signed out.");
    });
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      search($("search-input").value);
    });
    replayAllButton = $("replay-all");
    replayAllButton.addEventListener("click", () => {
      confirmingAll = true;
      renderReplayAll();
    });
    window.addEventListener("hashchange", () => {
      if (/token=/.test(location.hash)) {
        tokenFromUrl();
        signIn();
      }
    });
    tokenFromUrl();
    signIn();
  });
})();
