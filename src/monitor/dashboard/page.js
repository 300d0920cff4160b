'use strict';
// tern's live dashboard. Samples (cumulative counters, as /varz shows them) arrive once a
// second from <base>/dashboard/events; rates are differences of consecutive samples. What the
// page shows is exported in window.__tern and, as JSON, in #tern-export (for tests).
(function () {
  const BASE = document.querySelector('meta[name="tern-base"]').content;
  const WINDOW_MS = 10 * 60 * 1000;
  const PANEL_MS = 5000;
  // `?frames=N` closes the stream after N updates: a headless browser then sees the page
  // settle and can print it (the browser test uses it).
  const FRAMES = Number(new URLSearchParams(location.search).get('frames')) || 0;
  const S = { server: null, samples: [], conns: [], subjects: [], closed: [], events: [],
    updates: 0, charts: {}, panels: {} };
  window.__tern = S;
  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  // ---- formatting
  function num(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(2) + 'G';
    if (n >= 1e6) return (n / 1e6).toFixed(2) + 'M';
    if (n >= 1e4) return (n / 1e3).toFixed(1) + 'k';
    return String(Math.round(n));
  }
  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : Math.round(n)) + ' ' + units[i];
  }
  function clock(t) { return new Date(t).toLocaleTimeString(); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
  }

  // ---- series
  function rateAt(i, key) {
    const a = S.samples[i - 1], b = S.samples[i];
    const dt = (b.t - a.t) / 1000;
    return dt > 0 ? Math.max(0, b[key] - a[key]) / dt : 0;
  }
  function rates(key) {
    const out = [];
    for (let i = 1; i < S.samples.length; i++) out.push([S.samples[i].t, rateAt(i, key)]);
    return out;
  }
  function gauge(key) { return S.samples.map((s) => [s.t, s[key]]); }
  function lastRate(key) { return S.samples.length > 1 ? rateAt(S.samples.length - 1, key) : 0; }

  // Slow consumers and stale connections, from increases of their counters.
  function deriveEvents() {
    const ev = [];
    for (let i = 1; i < S.samples.length; i++) {
      const a = S.samples[i - 1], b = S.samples[i];
      if (b.slow_consumers > a.slow_consumers) ev.push({ t: b.t, kind: 'slow', n: b.slow_consumers - a.slow_consumers });
      if (b.stale_connections > a.stale_connections) ev.push({ t: b.t, kind: 'stale', n: b.stale_connections - a.stale_connections });
    }
    S.events = ev;
  }

  // ---- charts: hand-drawn on a canvas, the last ten minutes
  // The top of the y axis: four steps of 1, 2 or 5 times a power of ten (integer steps for
  // counts, so the labels read 0, 1, 2...).
  function niceTop(v) {
    const raw = Math.max(v / 4, 1);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * p).find((m) => m >= raw);
    return 4 * step;
  }
  function chart(id, lines, fmt) {
    const canvas = $(id);
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const last = S.samples.length ? S.samples[S.samples.length - 1].t : Date.now();
    const t0 = last - WINDOW_MS;
    let max = 0, points = 0;
    for (const l of lines) for (const [t, v] of l.points) if (t >= t0 && v > max) max = v;
    const top = niceTop(max);
    const left = 58, right = 6, up = 6, down = 16;
    const pw = w - left - right, ph = h - up - down;
    const x = (t) => left + ((t - t0) / WINDOW_MS) * pw;
    const y = (v) => up + ph - (v / top) * ph;
    g.font = '10px ui-sans-serif, system-ui, sans-serif';
    g.fillStyle = css('--muted'); g.strokeStyle = css('--line'); g.lineWidth = 1;
    g.textAlign = 'right'; g.textBaseline = 'middle';
    for (let k = 0; k <= 4; k++) {
      const v = (top * k) / 4, yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
      g.fillText(fmt(v), left - 4, yy);
    }
    g.textAlign = 'center'; g.textBaseline = 'top';
    for (const [m, label] of [[10, '-10m'], [5, '-5m'], [0, 'now']]) {
      g.fillText(label, Math.min(Math.max(x(last - m * 60000), left + 12), w - right - 12), h - down + 3);
    }
    for (const e of S.events) {
      if (e.t < t0) continue;
      const xx = Math.round(x(e.t)) + 0.5;
      g.strokeStyle = css(e.kind === 'slow' ? '--slow' : '--stale'); g.lineWidth = 1.5;
      g.beginPath(); g.moveTo(xx, up); g.lineTo(xx, up + ph); g.stroke();
    }
    for (const l of lines) {
      const pts = l.points.filter(([t]) => t >= t0);
      if (!pts.length) continue;
      g.strokeStyle = css(l.color); g.lineWidth = 1.6; g.lineJoin = 'round';
      g.beginPath();
      pts.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
      g.stroke();
      g.globalAlpha = 0.12; g.fillStyle = css(l.color);
      g.lineTo(x(pts[pts.length - 1][0]), y(0)); g.lineTo(x(pts[0][0]), y(0)); g.closePath(); g.fill();
      g.globalAlpha = 1;
      points += pts.length;
    }
    // What was drawn, for tests: points plotted, the largest value, the newest of each line.
    S.charts[id] = { points, max, latest: lines.map((l) => (l.points.length ? l.points[l.points.length - 1][1] : 0)) };
  }

  // ---- tables
  function table(id, head, rows, empty) {
    const th = head.map((c) => '<th' + (c[1] ? ' class="n"' : '') + '>' + esc(c[0]) + '</th>').join('');
    const body = rows.length
      ? rows.map((r) => '<tr>' + r.map((v, i) => '<td' + (head[i][1] ? ' class="n"' : '') + '>' + esc(v) + '</td>').join('') + '</tr>').join('')
      : '<tr><td class="empty" colspan="' + head.length + '">' + esc(empty) + '</td></tr>';
    $(id).innerHTML = '<tr>' + th + '</tr>' + body;
  }

  function render() {
    const s = S.samples[S.samples.length - 1] || {};
    const live = {
      in_msgs: lastRate('in_msgs'), out_msgs: lastRate('out_msgs'),
      in_bytes: lastRate('in_bytes'), out_bytes: lastRate('out_bytes'),
    };
    S.rates = live;
    const tiles = [
      ['msgs in / s', num(live.in_msgs)], ['msgs out / s', num(live.out_msgs)],
      ['bytes in / s', bytes(live.in_bytes)], ['bytes out / s', bytes(live.out_bytes)],
      ['connections', num(s.connections || 0)], ['subscriptions', num(s.subscriptions || 0)],
      ['slow consumers', num(s.slow_consumers || 0), s.slow_consumers > 0],
      ['stale connections', num(s.stale_connections || 0), s.stale_connections > 0],
      ['routes', num(s.routes || 0)], ['memory', bytes(s.mem || 0)], ['cpu', (s.cpu || 0).toFixed(1) + ' %'],
    ];
    $('tiles').innerHTML = tiles.map(([label, v, alert]) =>
      '<div class="tile' + (alert ? ' alert' : '') + '"><b>' + esc(v) + '</b><span>' + esc(label) + '</span></div>').join('');
    chart('chart-msgs', [{ color: '--in', points: rates('in_msgs') }, { color: '--out', points: rates('out_msgs') }], num);
    chart('chart-bytes', [{ color: '--in', points: rates('in_bytes') }, { color: '--out', points: rates('out_bytes') }], bytes);
    chart('chart-conns', [{ color: '--gauge', points: gauge('connections') }], num);
    chart('chart-subs', [{ color: '--gauge', points: gauge('subscriptions') }], num);
    table('conns', [['cid'], ['name'], ['address'], ['account'], ['pending', 1], ['msgs/s', 1], ['bytes/s', 1], ['subs', 1]],
      S.conns.map((c) => [c.cid, c.name, c.addr, c.account, bytes(c.pending_bytes), num(c.msgs_per_sec), bytes(c.bytes_per_sec), c.subscriptions]),
      'no traffic');
    table('subjects', [['account'], ['subject'], ['subscriptions', 1]],
      S.subjects.map((x) => [x.account, x.subject, x.subscriptions]), 'no client subscriptions');
    const log = S.events.slice().reverse().slice(0, 50).map((e) => {
      const who = S.closed.filter((c) => Math.abs(c.t - e.t) < 3000 && (c.reason === 'Stale Connection') === (e.kind === 'stale'));
      const names = who.map((c) => 'cid ' + c.cid + (c.name ? ' ' + c.name : '') + ' ' + c.addr).join(', ');
      return '<li><span class="' + e.kind + '">' + (e.kind === 'slow' ? 'slow consumer' : 'stale connection') +
        (e.n > 1 ? ' ×' + e.n : '') + '</span> ' + esc(clock(e.t)) + (names ? ' — ' + esc(names) : '') + '</li>';
    });
    $('events').innerHTML = log.join('') || '<li class="muted">none in the last ten minutes</li>';
    if (S.server) {
      const up = Math.max(0, Math.round(((s.t || Date.now()) - S.server.start) / 1000));
      $('server').textContent = S.server.server_name + ' · v' + S.server.version + ' · up ' +
        Math.floor(up / 3600) + 'h' + Math.floor((up % 3600) / 60) + 'm' + (up % 60) + 's';
    }
    $('tern-export').textContent = JSON.stringify({
      updates: S.updates, samples: S.samples.length, last: s, rates: live, charts: S.charts,
      conns: S.conns.length, subjects: S.subjects.length, events: S.events.length, panels: S.panels,
    });
  }

  // ---- the stream
  function connect() {
    const es = new EventSource(BASE + '/dashboard/events');
    const status = $('status');
    es.onopen = () => { status.textContent = 'live'; status.className = 'status live'; };
    es.onerror = () => { status.textContent = 'reconnecting'; status.className = 'status'; };
    es.addEventListener('history', (e) => {
      const d = JSON.parse(e.data);
      S.server = d;
      S.samples = d.samples;
      S.closed = d.closed;
      deriveEvents();
      render();
    });
    es.onmessage = (e) => {
      const d = JSON.parse(e.data);
      const last = S.samples[S.samples.length - 1];
      if (!last || d.sample.t > last.t) {
        S.samples.push(d.sample);
        while (S.samples.length && S.samples[0].t < d.sample.t - WINDOW_MS - 1000) S.samples.shift();
      }
      S.conns = d.conns;
      if (d.subjects) S.subjects = d.subjects;
      S.closed = S.closed.concat(d.closed).filter((c) => c.t > d.sample.t - WINDOW_MS);
      S.updates++;
      deriveEvents();
      render();
      if (FRAMES && S.updates >= FRAMES) {
        es.close();
        status.textContent = 'stopped'; status.className = 'status';
      }
    };
  }

  // ---- panels read from the JSON endpoints, every few seconds while the page is visible.
  // Each names its endpoint; a panel whose endpoint answers 404 is hidden (leafnodes, until
  // the server serves /leafz).
  const PANELS = [
    ['routes', '/routez', (d) => table('routes', [['rid'], ['remote'], ['address'], ['rtt'], ['pending', 1], ['msgs in', 1], ['msgs out', 1], ['subs', 1]],
      (d.routes || []).map((r) => [r.rid, r.remote_name || r.remote_id, r.ip + ':' + r.port, r.rtt, bytes(r.pending_size), num(r.in_msgs), num(r.out_msgs), r.subscriptions]),
      'not clustered')],
    ['leafz', '/leafz', (d) => table('leafz', [['name'], ['account'], ['address'], ['rtt'], ['msgs in', 1], ['msgs out', 1], ['subs', 1]],
      (d.leafs || []).map((l) => [l.name, l.account, l.ip + ':' + l.port, l.rtt, num(l.in_msgs), num(l.out_msgs), l.subscriptions]),
      'no leafnodes')],
    ['accounts', '/accstatz?unused=1', (d) => table('accounts', [['account'], ['conns', 1], ['leafs', 1], ['subs', 1], ['msgs in', 1], ['msgs out', 1], ['slow', 1]],
      (d.account_statz || []).map((a) => [a.acc, a.conns, a.leafnodes, a.num_subscriptions, num(a.received.msgs), num(a.sent.msgs), a.slow_consumers]),
      'no accounts')],
    ['jsz', '/jsz?accounts=true&streams=true&consumers=true', (d) => {
      $('jsz-summary').textContent = d.disabled ? 'JetStream is off' :
        d.streams + ' streams, ' + d.consumers + ' consumers, ' + num(d.messages) + ' messages, ' + bytes(d.bytes) +
        ' (memory ' + bytes(d.memory || 0) + ', storage ' + bytes(d.storage || 0) + ')';
      const rows = [];
      for (const a of d.account_details || []) for (const st of a.stream_detail || []) {
        const cons = (st.consumer_detail || []).map((c) => c.name + ' (' + num(c.num_pending) + ' pending, ' + num(c.num_ack_pending) + ' unacked)');
        rows.push([a.name, st.name, num(st.state.messages), bytes(st.state.bytes), st.state.consumer_count, cons.join(', ')]);
      }
      table('jsz', [['account'], ['stream'], ['messages', 1], ['bytes', 1], ['consumers', 1], ['consumer detail']], rows, d.disabled ? '' : 'no streams');
    }],
  ];
  async function panels() {
    if (document.hidden) return;
    for (const [name, path, show] of PANELS) {
      try {
        const r = await fetch(BASE + path, { headers: { Accept: 'application/json' } });
        const panel = $('panel-' + name);
        if (panel) panel.hidden = r.status === 404;
        S.panels[name] = r.status;
        if (r.ok) show(await r.json());
      } catch (err) {
        S.panels[name] = String(err);
      }
    }
  }

  const links = ['varz', 'connz', 'subsz', 'routez', 'accountz', 'jsz', 'healthz', 'metrics'];
  $('links').innerHTML = links.map((l) => '<a href="' + esc(BASE + '/' + l) + '">/' + l + '</a>').join('');
  window.addEventListener('resize', render);
  connect();
  panels();
  setInterval(panels, PANEL_MS);
})();
