// The console page's code: asks the manager's API (src/manager/api.ts) over a WebSocket for the
// topology ("list") and the links ("links", once a second), redraws the SVG from both, and turns
// clicks into "assign" and "unassign". Events the manager pushes (assigned, failed, …) are listed
// and make the page ask for the topology again.
const token = new URLSearchParams(location.hash.slice(1)).get('token') ?? '';
const svg = document.getElementById('fabric');
const stateLine = document.getElementById('state');
const message = document.getElementById('message');
const events = document.getElementById('events');

const view = { list: null, links: [], before: new Map(), rate: new Map(), selected: null, busy: false };

// ---- the API ----
const ws = new WebSocket(`ws://${location.host}/`, [`token.${token}`]);
const waiting = new Map();
let nextId = 1;

function call(op, args = {}) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, op, ...args }));
  });
}

ws.onmessage = (m) => {
  const msg = JSON.parse(m.data);
  if ('event' in msg) return onEvent(msg);
  const w = waiting.get(msg.id);
  waiting.delete(msg.id);
  if (msg.ok) w?.resolve(msg.result);
  else w?.reject(new Error(msg.error.message));
};
ws.onopen = async () => {
  stateLine.textContent = 'connected to the manager';
  await refresh();
  setInterval(pollLinks, 1000);
};
ws.onclose = () => (stateLine.textContent = token ? 'disconnected from the manager (is the lab up? reload to retry)' : 'no token: open the URL `lab console` prints');

function onEvent(e) {
  const line = document.createElement('div');
  line.textContent = `${new Date().toLocaleTimeString()} ${describe(e)}`;
  events.prepend(line);
  void refresh();
}

function describe(e) {
  const a = e.assignment;
  if (e.event === 'failed') return `${e.op} ${e.function} failed: ${e.error}`;
  if (e.event === 'fault') return `fault ${e.link}${e.dir ? ` ${e.dir}` : ''}: ${Object.entries(e.set).map(([k, v]) => `${k} ${v}`).join(', ')}`;
  if (e.event === 'moved') return `moved ${a.di}/${a.function} from ${e.from.host} to ${a.host} slot ${a.slot} (${e.ms} ms)`;
  return `${e.event} ${a.di}/${a.function} ${e.event === 'assigned' ? 'to' : 'from'} ${a.host} slot ${a.slot} (${e.ms} ms)`;
}

function say(text, error = false) {
  message.textContent = text;
  message.className = error ? 'error' : '';
}

async function refresh() {
  try {
    view.list = await call('list');
    await pollLinks();
  } catch (err) {
    say(err.message, true);
  }
}

async function pollLinks() {
  let links;
  try {
    ({ links } = await call('links'));
  } catch (err) {
    links = [];
    stateLine.textContent = `links: ${err.message}`;
  }
  const now = performance.now();
  for (const l of links) {
    const b = view.before.get(l.port);
    const frames = l.rxFrames + l.txFrames;
    if (b && now - b.at < 500) continue; // an extra poll (after a click) is too soon to tell a rate
    if (b) view.rate.set(l.port, Math.round(((frames - b.frames) * 1000) / (now - b.at)));
    view.before.set(l.port, { frames, at: now });
  }
  view.links = links;
  draw();
}

// ---- clicks ----
async function act(what, work) {
  view.busy = true;
  say(`${what}…`);
  try {
    const r = await work();
    say(`${what}: done in ${r.ms} ms`);
  } catch (err) {
    say(`${what}: ${err.message}`, true);
  } finally {
    view.busy = false;
    view.selected = null;
    await refresh();
  }
}

function clickFunction(ref, holder) {
  if (view.busy) return;
  if (holder) return act(`unassign ${ref} from ${holder}`, () => call('unassign', { host: holder, function: ref }));
  view.selected = view.selected === ref ? null : ref;
  say(view.selected ? `${ref} selected: click a host to assign it` : '');
  draw();
}

function clickHost(host) {
  if (view.busy || !view.selected) return;
  const ref = view.selected;
  return act(`assign ${ref} to ${host}`, () => call('assign', { host, function: ref }));
}

// ---- drawing ----
const NS = 'http://www.w3.org/2000/svg';
function el(tag, attrs = {}, ...children) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return e;
}
const text = (x, y, s, attrs = {}) => el('text', { x, y, ...attrs }, s);

const W = 960;
const HOST = { y: 20, w: 220, h: 30 };
const SWITCH = { y: 250, h: 60 };
const DI = { y: 420, h: 120 };

/** x of the centre of item i of n spread across the width. */
const spread = (i, n) => ((i + 0.5) * W) / n;

function draw() {
  const list = view.list;
  if (!list) return;
  svg.replaceChildren();
  const linksOf = (station) => view.links.filter((l) => l.station === station || l.host === station);
  const anchors = new Map(); // port -> {x, y} at its station
  const fnAt = new Map(); // "di/fn" -> {x, y}
  const slotAt = new Map(); // "host#slot" -> {x, y}

  list.hosts.forEach((h, i) => {
    const cx = spread(i, list.hosts.length);
    const height = HOST.h + 24 * h.slots.length + 10;
    const x = cx - HOST.w / 2;
    const hi = linksOf(h.name)[0]?.station ?? `hi-${h.name}`;
    const g = el('g', { class: `host${view.selected ? ' target' : ''}`, 'data-host': h.name, onclick: () => clickHost(h.name) });
    g.append(el('rect', { class: 'box', x, y: HOST.y, width: HOST.w, height, rx: 6 }));
    g.append(text(x + 8, HOST.y + 14, `host ${h.name}`, { 'font-weight': 600 }), text(x + 110, HOST.y + 14, `HI ${hi}`));
    h.slots.forEach((s, k) => {
      const y = HOST.y + HOST.h + 24 * k;
      const used = s.function !== null;
      const label = used ? `slot ${s.slot}: ${s.function}` : `slot ${s.slot}: free`;
      g.append(el('g', { class: `slot${used ? ' used' : ''}`, 'data-slot': `${h.name}#${s.slot}` }, el('rect', { x: x + 8, y, width: HOST.w - 16, height: 20, rx: 3 }), text(x + 14, y + 10, label)));
      slotAt.set(`${h.name}#${s.slot}`, { x: x + HOST.w - 8, y: y + 10 });
    });
    svg.append(g);
    linksOf(h.name).forEach((l, k, all) => anchors.set(l.port, { x: x + ((k + 1) * HOST.w) / (all.length + 1), y: HOST.y + height }));
  });

  list.dis.forEach((d, i) => {
    const n = d.functions.length;
    const w = Math.max(220, n * 110 + 20);
    const x = spread(i, list.dis.length) - w / 2;
    const g = el('g', { class: 'di', 'data-di': d.name });
    g.append(el('rect', { class: 'box', x, y: DI.y, width: w, height: DI.h, rx: 6 }), text(x + 8, DI.y + 14, `DI ${d.name}`, { 'font-weight': 600 }));
    d.functions.forEach((f, k) => {
      const ref = `${d.name}/${f.name}`;
      const fx = x + 10 + k * 110;
      const cls = `fn${f.holder ? ' assigned' : ''}${view.selected === ref ? ' selected' : ''}`;
      g.append(
        el('g', { class: cls, 'data-function': ref, onclick: (ev) => (ev.stopPropagation(), clickFunction(ref, f.holder)) },
          el('rect', { x: fx, y: DI.y + 30, width: 100, height: 78, rx: 4 }),
          text(fx + 6, DI.y + 44, `${f.name} ${f.bdf}`),
          text(fx + 6, DI.y + 62, f.model),
          text(fx + 6, DI.y + 80, f.holder ? `→ ${f.holder}` : 'free'),
          el('title', {}, f.holder ? `click to unassign ${ref} from ${f.holder}` : `click, then a host, to assign ${ref}`)),
      );
      fnAt.set(ref, { x: fx + 50, y: DI.y + 30 });
    });
    svg.append(g);
    linksOf(d.name).forEach((l, k, all) => anchors.set(l.port, { x: x + ((k + 1) * w) / (all.length + 1), y: DI.y }));
  });

  // The manager's own station, beside the DIs.
  const managerLinks = view.links.filter((l) => l.kind === 'manager');
  if (managerLinks.length) {
    const x = W - 150;
    svg.append(el('g', { class: 'manager' }, el('rect', { class: 'box', x, y: DI.y + 40, width: 130, height: 40, rx: 6 }), text(x + 10, DI.y + 60, `manager (${managerLinks[0].station})`)));
    managerLinks.forEach((l) => anchors.set(l.port, { x: x + 65, y: DI.y + 40 }));
  }

  // The switch, its ports in the order of the stations above and below it.
  const top = view.links.filter((l) => l.kind === 'hi');
  const bottom = view.links.filter((l) => l.kind !== 'hi');
  const sw = el('g', { class: 'switch' }, el('rect', { class: 'box', x: 20, y: SWITCH.y, width: W - 40, height: SWITCH.h, rx: 6 }), text(30, SWITCH.y + SWITCH.h / 2, 'switch'));
  svg.append(sw);
  for (const [row, y] of [[top, SWITCH.y], [bottom, SWITCH.y + SWITCH.h]]) {
    row.forEach((l, k) => {
      const px = 100 + ((k + 0.5) * (W - 140)) / row.length;
      const from = anchors.get(l.port) ?? { x: px, y: y === SWITCH.y ? HOST.y : DI.y };
      const rate = view.rate.get(l.port);
      const g = el('g', { class: `link${l.up ? '' : ' down'}`, 'data-link': l.port });
      g.append(el('line', { x1: from.x, y1: from.y, x2: px, y2: y }));
      const mx = (from.x + px) / 2 + 6;
      const my = (from.y + y) / 2;
      g.append(
        text(mx, my - 8, `${l.port}${l.up ? '' : ' DOWN'}`),
        text(mx, my + 8, `rx ${l.rxFrames} tx ${l.txFrames}${rate === undefined ? '' : ` (${rate}/s)`}`, { 'data-counters': l.port }),
      );
      svg.append(g, el('g', { class: 'port' }, el('rect', { x: px - 5, y: y - 5, width: 10, height: 10 })));
    });
  }

  // Assignments: each held function to its host's slot.
  for (const a of list.assignments) {
    const f = fnAt.get(`${a.di}/${a.function}`);
    const s = slotAt.get(`${a.host}#${a.slot}`);
    if (f && s) svg.append(el('path', { class: 'assignment', d: `M ${f.x} ${f.y} C ${f.x} ${f.y - 150}, ${s.x + 60} ${s.y}, ${s.x} ${s.y}` }));
  }
}
