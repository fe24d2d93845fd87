// The ftvm dashboard page: no framework, no CDN. The server sends the charts (SVG drawn from
// the machine definitions) once, then a tick every ~200 ms with the actors' states, the
// pair's counters, one stats sample and new timeline items (Server-Sent Events).
'use strict';

const $ = (id) => document.getElementById(id);
const samples = [];
const timeline = [];
const MAX_SAMPLES = 300;
let charts = [];

/** `{protected: 'flowing'}` -> ['protected', 'protected.flowing'], as runtime/diagram/graph.ts. */
function activeStateIds(value, prefix = []) {
  if (typeof value === 'string') return [[...prefix, value].join('.')];
  if (value && typeof value === 'object') {
    const ids = [];
    for (const [k, v] of Object.entries(value)) {
      ids.push([...prefix, k].join('.'));
      ids.push(...activeStateIds(v, [...prefix, k]));
    }
    return ids;
  }
  return [];
}

const fmtValue = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
const fmtNum = (n) => (n >= 1e9 ? (n / 1e9).toFixed(2) + ' G' : n >= 1e6 ? (n / 1e6).toFixed(1) + ' M' : n >= 1e3 ? (n / 1e3).toFixed(1) + ' k' : String(Math.round(n)));
const fmtBytes = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(2)} MiB`);
/**
 * A colour per node: the first primary, the first backup, backups that joined later by
 * re-protection (`backup-1`, `backup-2`, ...: runtime/pair.ts names them), and the pair chart.
 * A node's inner actors (`backup-1.cpu`) take the node's colour.
 */
const nodeClass = (actorId) => {
  const node = actorId.split('.')[0];
  return node === 'primary' || node === 'backup' || node === 'pair' ? node : /^backup-\d+$/.test(node) ? 'joined' : 'other';
};
/** `backup-1.cpu` -> 'backup-1 node (cpu)'. */
const actorLabel = (actorId) => {
  const [node, ...inner] = actorId.split('.');
  return inner.length > 0 ? `${node} node (${inner.join('.')})` : `${node} node`;
};
/** Why a chart has no actor, where the reason is known. */
/** The device charts run in every machine with a virtio disk or NIC; the seq demo's has none. */
const NO_VIRTIO = "the demo's seq guest has no virtio disk or NIC: `--inspect` on `ftvm run`, `primary` or `backup` with --disk/--net shows this chart";
const IDLE_NOTE = {
  cpu: 'no node runs its batches under the CPU chart (runtime/cpu-actor.ts) in this runtime yet',
  virtio: NO_VIRTIO,
  'virtio-blk': NO_VIRTIO,
  'virtio-net': NO_VIRTIO,
};

function buildCharts(list) {
  charts = list;
  const box = $('charts');
  box.textContent = '';
  for (const c of list) {
    const card = document.createElement('div');
    card.className = 'card idle';
    card.dataset.chart = c.name;
    const h = document.createElement('h3');
    h.textContent = c.name + (c.machineId !== c.name ? ` (${c.machineId})` : '');
    const actors = document.createElement('div');
    actors.className = 'actors';
    const wrap = document.createElement('div');
    wrap.className = 'svgwrap';
    // The SVG is our own server's rendering of the chart definition (runtime/diagram/svg.ts).
    wrap.innerHTML = c.svg;
    card.append(h, actors, wrap);
    box.append(card);
  }
}

function lightCharts(actorList) {
  for (const c of charts) {
    const card = document.querySelector(`.card[data-chart="${c.name}"]`);
    if (!card) continue;
    for (const g of card.querySelectorAll('g.state')) g.classList.remove('lit', 'lit-primary', 'lit-backup', 'lit-joined', 'lit-pair', 'lit-other', 'stopped');
    const mine = actorList.filter((a) => a.chart === c.name);
    const actorsBox = card.querySelector('.actors');
    actorsBox.textContent = '';
    card.classList.toggle('idle', mine.length === 0);
    if (mine.length === 0) {
      const none = document.createElement('span');
      none.className = 'none';
      none.textContent = IDLE_NOTE[c.name] ?? 'no running actor of this chart in this runtime yet';
      actorsBox.append(none);
      continue;
    }
    // Listed oldest first. Lit stopped actors first, then running ones, each oldest first: in a
    // state several light, the newest colour wins (a node killed in `protected.flowing`, its
    // successor there now), unless two running actors share it, which mixes their colours.
    const byAge = [...mine].sort((x, y) => x.startedMs - y.startedMs);
    for (const a of byAge) {
      const line = document.createElement('div');
      line.className = `a-${nodeClass(a.node)}`;
      line.dataset.node = a.node;
      line.textContent = `${actorLabel(a.node)}: ${fmtValue(a.value)}${a.status !== 'active' ? ` (${a.status})` : ''}`;
      actorsBox.append(line);
    }
    const running = (a) => a.status === 'active';
    const litByRunning = new Set();
    for (const a of [...byAge.filter((x) => !running(x)), ...byAge.filter(running)]) {
      for (const id of activeStateIds(a.value)) {
        const g = card.querySelector(`g.state[data-state="${CSS.escape(id)}"]`);
        if (!g) continue;
        // The newer actor's colour replaces an older stopped one's; two running ones mix.
        if (!litByRunning.has(id)) g.classList.remove('lit-primary', 'lit-backup', 'lit-joined', 'lit-pair', 'lit-other', 'stopped');
        if (running(a)) litByRunning.add(id);
        g.classList.add('lit', `lit-${nodeClass(a.node)}`);
        if (!running(a)) g.classList.add('stopped');
      }
    }
  }
}

function spark(svgId, values, color) {
  const svg = $(svgId);
  const max = Math.max(1e-9, ...values);
  const n = values.length;
  const pts = values.map((v, i) => `${n <= 1 ? 0 : (i / (n - 1)) * 300},${58 - (v / max) * 54}`).join(' ');
  svg.innerHTML = `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="1.5" vector-effect="non-scaling-stroke"/>` +
    `<text x="2" y="10" font-size="9" fill="#789">max ${fmtNum(max)}</text>`;
}

function drawTimeline() {
  const svg = $('timeline');
  if (samples.length === 0) return;
  const t1 = samples[samples.length - 1].atMs;
  const t0 = samples[0].atMs;
  const span = Math.max(1000, t1 - t0);
  const x = (t) => ((t - t0) / span) * 1000;
  const outRate = samples.map((s, i) => (i === 0 ? 0 : Math.max(0, s.outputs - samples[i - 1].outputs) / Math.max(0.001, (s.atMs - samples[i - 1].atMs) / 1000)));
  const lane = (vals, y0, h, color) => {
    const max = Math.max(1e-9, ...vals);
    const pts = vals.map((v, i) => `${x(samples[i].atMs)},${y0 + h - (v / max) * h}`).join(' ');
    return `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="1.5" vector-effect="non-scaling-stroke"/>`;
  };
  let out = '<rect x="0" y="0" width="1000" height="90" fill="#fbfcfe"/>';
  out += lane(samples.map((s) => s.logEntriesPerSec), 2, 26, '#2a7');
  out += lane(samples.map((s) => s.unacked ?? 0), 32, 26, '#c85a00');
  out += lane(outRate, 62, 26, '#36c');
  out += '<text x="4" y="10" font-size="10" fill="#2a7">log entries/s</text><text x="4" y="40" font-size="10" fill="#c85a00">entries awaiting ack</text><text x="4" y="70" font-size="10" fill="#36c">outputs/s</text>';
  const colorOf = (type) => (type === 'failover' || type === 'killed' ? '#c00' : type === 'arbiter' ? '#a0a' : type === 'reprotect' ? '#1b8a5a' : '#888');
  // Grey marks (the dashboard's own commands, ...) first, so that a kill, a failover or a join
  // at the same moment is drawn over them, not hidden.
  const marks = timeline.filter((e) => e.atMs >= t0 && e.type !== 'state');
  for (const e of [...marks.filter((m) => colorOf(m.type) === '#888'), ...marks.filter((m) => colorOf(m.type) !== '#888')]) {
    const color = colorOf(e.type);
    out += `<line x1="${x(e.atMs)}" x2="${x(e.atMs)}" y1="0" y2="90" stroke="${color}" stroke-width="2" vector-effect="non-scaling-stroke"><title>${e.node} ${e.type}: ${e.detail}</title></line>`;
  }
  svg.innerHTML = out;
}

function addEvents(items) {
  const list = $('events');
  for (const e of items) {
    timeline.push(e);
    const li = document.createElement('li');
    li.className = e.type;
    li.textContent = `${(e.atMs / 1000).toFixed(3)}s  ${e.node}: ${e.type} ${e.detail}`;
    list.prepend(li);
  }
  while (list.children.length > 300) list.lastChild.remove();
}

function addSample(s) {
  if (!s) return;
  samples.push(s);
  if (samples.length > MAX_SAMPLES) samples.shift();
  spark('s-mips', samples.map((x) => x.mips), '#1c64d8');
  spark('s-lag', samples.map((x) => x.lagInstructions), '#c85a00');
  spark('s-log', samples.map((x) => x.logBytesPerSec / 1024), '#2a7');
  spark('s-held', samples.map((x) => x.held), '#a0a');
  $('v-mips').textContent = s.mips.toFixed(1);
  $('v-lag').textContent = fmtNum(s.lagInstructions);
  $('v-log').textContent = (s.logBytesPerSec / 1024).toFixed(1);
  $('v-held').textContent = String(s.held);
}

function showView(v) {
  const s = v.stats;
  $('live').textContent = s?.live ?? '–';
  $('generation').textContent = s ? String(s.generation) : '–';
  $('outputs').textContent = String(v.outputs);
  $('duplicates').textContent = String(v.duplicates);
  $('failovers').textContent = String(v.failovers);
  $('icount').textContent = fmtNum(s?.primary?.icount ?? 0);
  $('log').textContent = `${fmtBytes(s?.logBytes ?? 0)} / ${fmtNum(s?.logEntries ?? 0)} entries`;
  $('status').textContent = !v.attached ? 'waiting for a pair…' : v.finished ? `finished: ${v.finished}` : `running${v.guest ? ` guest ${v.guest}` : ''}`;
  const con = $('console');
  const atBottom = con.scrollTop + con.clientHeight >= con.scrollHeight - 4;
  con.textContent = v.console;
  if (atBottom) con.scrollTop = con.scrollHeight;
  // Re-protection needs the pair chart in `unprotected` (the server checks too, and says why not).
  const pairActor = v.actors.filter((a) => a.chart === 'pair' && a.status === 'active').pop();
  const canAdd = pairActor?.value === 'unprotected';
  for (const b of document.querySelectorAll('button[data-command]')) {
    b.disabled = !v.attached || Boolean(v.finished) || (b.dataset.command === 'add-backup' && !canAdd);
  }
  $('add-backup').title = canAdd
    ? 'Re-protect: a new backup joins the live primary from a snapshot'
    : `Possible once the pair is unprotected (after a failover); the pair is ${pairActor ? fmtValue(pairActor.value) : 'not running'}`;
  lightCharts(v.actors);
}

async function command(name) {
  const msg = $('message');
  msg.textContent = `${name}…`;
  try {
    const r = await fetch(`/api/${name}`, { method: 'POST' });
    const body = await r.json();
    msg.textContent = body.message;
  } catch (e) {
    msg.textContent = `${name} failed: ${e.message}`;
  }
}

for (const b of document.querySelectorAll('button[data-command]')) b.addEventListener('click', () => command(b.dataset.command));

const es = new EventSource('/events');
es.addEventListener('init', (ev) => {
  const d = JSON.parse(ev.data);
  buildCharts(d.charts);
  samples.length = 0;
  timeline.length = 0;
  $('events').textContent = '';
  for (const s of d.samples) addSample(s);
  addEvents(d.timeline);
  showView(d.view);
  drawTimeline();
  document.body.dataset.ready = 'true';
});
es.addEventListener('tick', (ev) => {
  const d = JSON.parse(ev.data);
  addSample(d.sample);
  addEvents(d.timeline);
  showView(d.view);
  drawTimeline();
});
es.onerror = () => {
  $('status').textContent = 'disconnected (the run may be over); retrying…';
};
