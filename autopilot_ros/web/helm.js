// The helm page: live state over a WebSocket from helm_node, a rolling plot on a canvas,
// and the keypad. Every command carries the token; the server checks each one. Nothing
// here loads from anywhere but this server (no CDN, no internet at sea).
'use strict';

const KNOTS_PER_MS = 3600 / 1852;
const TACK_CONFIRM_MS = 3000;
const $ = (id) => document.getElementById(id);

const page = {
  ws: null, connected: false, commandsEnabled: false, whyDisabled: '', unlocked: false,
  token: '', state: null, points: [], spanS: 300, nextId: 1, retryMs: 1000, tackArmed: 0,
};

function fmt(value, digits) {
  return value === null || value === undefined ? '\u2013' : value.toFixed(digits);
}

function side(deg) {
  if (deg === null || deg === undefined) return '\u2013';
  if (Math.abs(deg) < 0.05) return '0';
  return `${Math.abs(deg).toFixed(0)}\u00b0 ${deg > 0 ? 'stbd' : 'port'}`;
}

function percent(value) {
  if (value === null || value === undefined) return '\u2013';
  const p = Math.round(value * 100);
  return `${p > 0 ? '+' : ''}${p} %`;
}

function badge(el, text, cls) {
  el.textContent = text;
  el.className = `badge ${cls || ''}`;
}

function showResult(ok, text) {
  const el = $('result');
  el.textContent = text;
  el.className = `result ${ok ? 'ok' : 'bad'}`;
}

// -- connection ---------------------------------------------------------------------------
function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  page.ws = ws;
  ws.onopen = () => {
    page.connected = true;
    page.retryMs = 1000;
    badge($('link'), 'connected', 'ok');
    if (page.token) send({type: 'auth', token: page.token});
    render();
  };
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = () => {
    page.connected = false;
    badge($('link'), 'disconnected: retrying', 'bad');
    render();
    setTimeout(connect, page.retryMs);
    page.retryMs = Math.min(page.retryMs * 2, 5000);
  };
}

function send(message) {
  if (!page.ws || page.ws.readyState !== WebSocket.OPEN) return false;
  message.id = page.nextId++;
  page.ws.send(JSON.stringify(message));
  return true;
}

function receive(msg) {
  if (msg.type === 'hello') {
    page.commandsEnabled = msg.commands_enabled;
    page.whyDisabled = msg.why_disabled;
    $('secure').textContent = msg.secure ? 'https' :
      (location.hostname === '127.0.0.1' || location.hostname === 'localhost' ? '' :
        'not encrypted: the token crosses the network in clear');
  } else if (msg.type === 'history') {
    page.spanS = msg.span_s;
    page.points = msg.points;
    $('span').textContent = Math.round(msg.span_s / 60);
  } else if (msg.type === 'state') {
    page.state = msg;
    page.points.push([msg.t, msg.engaged ? msg.heading_error_deg : null,
      msg.pilot_alive ? msg.command : null, msg.rudder]);
    const oldest = msg.t - page.spanS;
    while (page.points.length && page.points[0][0] < oldest) page.points.shift();
  } else if (msg.type === 'auth') {
    page.unlocked = msg.ok;
    if (msg.ok) {
      sessionStorage.setItem('helm-token', page.token);
    } else {
      page.token = '';
      sessionStorage.removeItem('helm-token');
    }
    showResult(msg.ok, msg.message);
  } else if (msg.type === 'result') {
    if (msg.locked) {
      page.unlocked = false;
      page.token = '';
      sessionStorage.removeItem('helm-token');
    }
    showResult(msg.ok, msg.message);
  }
  render();
}

// -- the view -----------------------------------------------------------------------------
function render() {
  const s = page.state;
  const alive = s && s.pilot_alive;
  if (!s || !s.pilot_alive) {
    badge($('pilot'), s && s.status_age_s !== null ?
      `autopilot silent ${s.status_age_s.toFixed(0)} s` : 'no autopilot', 'bad');
  } else {
    badge($('pilot'), 'autopilot', 'ok');
  }
  if (s) {
    const mode = s.mode || '\u2013';
    badge($('mode'), mode.replace('_', ' ').toUpperCase(),
      s.engaged ? 'ok' : (mode === 'standby' ? '' : 'warn'));
    $('heading').textContent = fmt(s.heading_deg, 1);
    const wind = s.mode === 'wind_awa' || s.mode === 'wind_twa';
    $('target-label').textContent = wind ? `Target ${s.mode === 'wind_awa' ? 'AWA' : 'TWA'}`
      : 'Target';
    if (wind && s.target_deg !== null) {
      $('target').textContent = Math.abs(s.target_deg).toFixed(1);
      $('target-unit').textContent = `\u00b0 ${s.target_deg >= 0 ? 'stbd' : 'port'}`;
    } else {
      $('target').textContent = s.mode === 'standby' ? '\u2013' : fmt(s.target_deg, 1);
      $('target-unit').textContent = '\u00b0';
    }
    $('target-heading').textContent = fmt(s.target_heading_deg, 1);
    // Heading error and command are the pilot's live output: from a silent pilot they are
    // old numbers, shown as a dash (the badge says how long it has been silent).
    const err = alive ? s.heading_error_deg : null;
    $('error').textContent = err === null ? '\u2013' : `${err > 0 ? '+' : ''}${err.toFixed(1)}`;
    $('command').textContent = percent(alive ? s.command : null);
    $('rudder').textContent = percent(s.rudder);
    moveMark($('bar-command'), alive ? s.command : null);
    moveMark($('bar-rudder'), s.rudder);
    $('policy').textContent = alive ? s.policy : '\u2013';
    $('reason').textContent = alive ? s.reason : '';
    $('awa').textContent = side(s.awa_deg);
    $('aws').textContent = s.aws_ms === null ? '\u2013' : (s.aws_ms * KNOTS_PER_MS).toFixed(1);
    $('aws-ms').textContent = fmt(s.aws_ms, 1);
    $('stw').textContent = s.stw_ms === null ? '\u2013' : (s.stw_ms * KNOTS_PER_MS).toFixed(1);
    const stale = $('stale');
    stale.textContent = s.stale_inputs.length ? s.stale_inputs.join(', ') : 'none';
    stale.className = s.stale_inputs.length ? 'stale' : '';
    // The last command any page gave: with two phones aboard, each sees the other's.
    $('last').textContent = s.last_result ? `Last command: ${s.last_result}` : '';
  }
  const usable = page.connected && page.commandsEnabled && page.unlocked;
  const steering = usable && alive && s.mode !== 'standby';
  $('btn-engage').disabled = !(usable && alive);
  $('btn-standby').disabled = !usable;
  for (const b of document.querySelectorAll('button.nudge')) b.disabled = !steering;
  $('btn-tack').disabled = !steering;
  if (page.tackArmed && Date.now() > page.tackArmed) disarmTack();
  $('token').disabled = !page.commandsEnabled || page.unlocked;
  $('token').hidden = page.unlocked;
  $('unlock').hidden = page.unlocked;
  $('lock').hidden = !page.unlocked;
  $('lock-note').textContent = !page.commandsEnabled ? `Buttons disabled: ${page.whyDisabled}`
    : (page.unlocked ? 'Helm unlocked on this page.' : 'Enter the access token to steer.');
  drawPlot();
}

function moveMark(el, value) {
  if (value === null || value === undefined) {
    el.style.display = 'none';
    return;
  }
  el.style.display = 'block';
  el.style.left = `${50 + 50 * Math.max(-1, Math.min(1, value))}%`;
}

// -- the rolling plot ---------------------------------------------------------------------
function niceLimit(value) {
  for (const step of [5, 10, 20, 45, 90, 180]) if (value <= step) return step;
  return 180;
}

function drawPlot() {
  const canvas = $('plot');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 40;
  const right = width - 44;
  const top = 8;
  const bottom = height - 20;
  const pts = page.points;
  const tEnd = pts.length ? pts[pts.length - 1][0] : 0;
  const tStart = tEnd - page.spanS;
  let worst = 0;
  for (const p of pts) if (p[1] !== null) worst = Math.max(worst, Math.abs(p[1]));
  const errLimit = niceLimit(worst);
  const x = (t) => left + (right - left) * (t - tStart) / page.spanS;
  const yErr = (e) => top + (bottom - top) * (0.5 - e / (2 * errLimit));
  const yRud = (r) => top + (bottom - top) * (0.5 - r / 2);

  g.font = '11px system-ui, sans-serif';
  g.strokeStyle = '#2a4356';
  g.fillStyle = '#8aa3b3';
  g.lineWidth = 1;
  g.textAlign = 'right';
  for (const f of [-1, -0.5, 0, 0.5, 1]) {
    const y = yErr(f * errLimit);
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(right, y);
    g.stroke();
    g.textAlign = 'right';
    g.fillText(`${f * errLimit > 0 ? '+' : ''}${f * errLimit}\u00b0`, left - 4, y + 4);
    g.textAlign = 'left';
    g.fillText(`${Math.round(f * 100)}%`, right + 4, y + 4);
  }
  g.textAlign = 'center';
  const minutes = Math.round(page.spanS / 60);
  for (let m = 0; m <= minutes; m++) {
    const xm = x(tEnd - m * 60);
    g.beginPath();
    g.moveTo(xm, top);
    g.lineTo(xm, bottom);
    g.stroke();
    g.fillText(m === 0 ? 'now' : `\u2212${m} min`, xm, height - 5);
  }
  line(g, pts, 1, x, yErr, '#e8f1f5', errLimit);
  line(g, pts, 2, x, yRud, '#4db1ff', 1);
  line(g, pts, 3, x, yRud, '#ffb04d', 1);
}

function line(g, pts, index, x, y, color, limit) {
  g.strokeStyle = color;
  g.lineWidth = 1.6;
  g.beginPath();
  let pen = false;
  for (const p of pts) {
    const v = p[index];
    if (v === null) {
      pen = false;
      continue;
    }
    const py = y(Math.max(-limit, Math.min(limit, v)));
    if (pen) g.lineTo(x(p[0]), py); else g.moveTo(x(p[0]), py);
    pen = true;
  }
  g.stroke();
}

// -- the keypad -----------------------------------------------------------------------------
function command(action, extra) {
  if (!send(Object.assign({type: 'command', action, token: page.token}, extra || {}))) {
    showResult(false, 'not connected');
  }
}

function disarmTack() {
  page.tackArmed = 0;
  $('btn-tack').classList.remove('armed');
  $('btn-tack').textContent = 'TACK';
}

function setup() {
  for (const b of document.querySelectorAll('button.nudge')) {
    b.addEventListener('click', () => command('nudge', {degrees: Number(b.dataset.deg)}));
  }
  $('btn-engage').addEventListener('click', () => command('engage'));
  $('btn-standby').addEventListener('click', () => command('standby'));
  $('btn-tack').addEventListener('click', () => {
    // A tack turns the boat through the wind: one tap arms it, a second within 3 s sends it.
    if (page.tackArmed && Date.now() <= page.tackArmed) {
      disarmTack();
      command('tack');
    } else {
      page.tackArmed = Date.now() + TACK_CONFIRM_MS;
      $('btn-tack').classList.add('armed');
      $('btn-tack').textContent = 'TACK? again';
      setTimeout(render, TACK_CONFIRM_MS + 50);
    }
  });
  $('unlock-form').addEventListener('submit', (event) => {
    event.preventDefault();
    page.token = $('token').value;
    $('token').value = '';
    if (!send({type: 'auth', token: page.token})) showResult(false, 'not connected');
  });
  $('lock').addEventListener('click', () => {
    page.unlocked = false;
    page.token = '';
    sessionStorage.removeItem('helm-token');
    showResult(true, 'helm locked on this page');
    render();
  });
  window.addEventListener('resize', drawPlot);
  page.token = sessionStorage.getItem('helm-token') || '';
  render();
  connect();
}

document.addEventListener('DOMContentLoaded', setup);
