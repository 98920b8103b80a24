// The demo page: plain DOM and fetch, no framework. Each panel calls the app's real routes.

const $ = (selector, root = document) => root.querySelector(selector);
const show = (root, field, value) => {
  $(`[data-field="${field}"]`, root).textContent = value ?? '–';
};

// Rate limit: the headers as the quota drains.
$('#limited-call').addEventListener('click', async () => {
  const panel = $('#rate-limit');
  const response = await fetch('/limited', { headers: { Accept: 'application/json' } });
  show(panel, 'status', `${response.status} ${response.statusText}`);
  for (const name of ['ratelimit', 'ratelimit-policy', 'retry-after']) show(panel, name, response.headers.get(name));
  const remaining = /(?:^|[;,]\s*)r=(\d+)/.exec(response.headers.get('ratelimit') ?? '');
  if (remaining) $('#limited-quota').value = Number(remaining[1]);
  panel.dataset.status = String(response.status);
  panel.dataset.calls = String(Number(panel.dataset.calls ?? 0) + 1);
});

// The header that tells the server device 2's requests are this page's (device 2 sends no cookies): the event stream
// sends it first, and only this page's events are sent here.
let viewer;

// Sessions: device 1 keeps its session in the browser's cookie; device 2 is an API client that keeps the signed id
// redisSession gives it in a header (and sends no cookies), so one page shows two sessions of the same user.
for (const device of document.querySelectorAll('.device')) {
  const usesHeader = device.dataset.device === 'header';
  let token = '';
  async function call(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body) headers['Content-Type'] = 'application/json';
    if (usesHeader) {
      headers['x-session-id'] = token;
      if (viewer) headers[viewer.header] = viewer.value;
    }
    const response = await fetch(path, {
      method,
      headers,
      body: body ? JSON.stringify(body) : undefined,
      credentials: usesHeader ? 'omit' : 'same-origin',
    });
    if (usesHeader && response.headers.has('x-session-id')) token = response.headers.get('x-session-id');
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error ?? `${response.status} ${response.statusText}`);
    return answer;
  }
  const describe = (me) =>
    me.loggedIn
      ? `logged in as ${me.userId} · ${me.sessionsOfThisUser.length} session(s) of ${me.userId} · visit ${me.visits}`
      : 'not logged in';
  const actions = {
    login: async () =>
      describe(
        await call('POST', '/login', {
          user: $('[data-role="user"]', device).value,
          password: $('[data-role="password"]', device).value,
        }),
      ),
    me: async () => describe(await call('GET', '/me')),
    logout: async () => describe(await call('POST', '/logout')),
    'logout-everywhere': async () =>
      `logged out everywhere: ${(await call('POST', '/logout-everywhere')).destroyed} session(s) destroyed`,
  };
  device.addEventListener('click', async (event) => {
    const action = event.target.closest('button')?.dataset.action;
    if (!action) return;
    show(device, 'who', '…');
    try {
      show(device, 'who', await actions[action]());
    } catch (error) {
      show(device, 'who', `failed: ${error.message}`);
    }
    device.dataset.calls = String(Number(device.dataset.calls ?? 0) + 1);
  });
}

// Cache: MISS vs HIT, with Age and the time the browser waited.
$('#cached-call').addEventListener('click', async () => {
  const panel = $('#cache');
  const started = performance.now();
  const response = await fetch('/cached', { headers: { Accept: 'application/json' } });
  const body = await response.json();
  const ms = Math.round(performance.now() - started);
  const label = response.headers.get('x-cache');
  show(panel, 'x-cache', label);
  show(panel, 'age', response.headers.get('age') ? `${response.headers.get('age')} s` : null);
  show(panel, 'time', `${ms} ms`);
  show(panel, 'generated', body.generatedAt);
  const item = document.createElement('li');
  item.textContent = `${label} in ${ms} ms`;
  item.dataset.cache = label;
  item.dataset.ms = String(ms);
  $('#cache-history').append(item);
});

$('#cached-invalidate').addEventListener('click', async () => {
  const response = await fetch('/cached/invalidate', { method: 'POST', headers: { Accept: 'application/json' } });
  const { invalidated } = await response.json();
  const item = document.createElement('li');
  item.textContent = `invalidated ${invalidated} entr${invalidated === 1 ? 'y' : 'ies'}`;
  item.dataset.cache = 'invalidated';
  $('#cache-history').append(item);
});

// The onEvent stream: counts by type, and the latest events.
const counts = new Map();
function renderCounts() {
  const rows = [...counts].sort(([a], [b]) => a.localeCompare(b));
  $('#event-counts').replaceChildren(
    ...rows.map(([type, count]) => {
      const row = document.createElement('tr');
      row.dataset.type = type;
      const name = document.createElement('td');
      name.textContent = type;
      const value = document.createElement('td');
      value.textContent = String(count);
      value.dataset.count = String(count);
      row.append(name, value);
      return row;
    }),
  );
}
function summary(event) {
  const { type, ...fields } = event;
  const shown = Object.entries(fields)
    .filter(([, value]) => value !== undefined && value !== '')
    .map(([name, value]) => `${name}=${typeof value === 'number' ? Math.round(value * 100) / 100 : value}`);
  return `${type} ${shown.join(' ')}`;
}
const stream = new EventSource('/events');
stream.addEventListener('open', () => show(document, 'connection', 'live'));
stream.addEventListener('error', () => show(document, 'connection', 'reconnecting…'));
stream.addEventListener('viewer', (message) => {
  viewer = JSON.parse(message.data);
});
stream.addEventListener('counts', (message) => {
  counts.clear();
  for (const [type, count] of Object.entries(JSON.parse(message.data))) counts.set(type, count);
  renderCounts();
});
stream.addEventListener('redisware', (message) => {
  const event = JSON.parse(message.data);
  counts.set(event.type, (counts.get(event.type) ?? 0) + 1);
  renderCounts();
  const item = document.createElement('li');
  item.textContent = summary(event);
  const log = $('#event-log');
  log.prepend(item);
  while (log.children.length > 8) log.lastElementChild.remove();
});
