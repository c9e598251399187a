// The fleet: every runner the caller may see, kept current by
// EventService/WatchEvents (each event re-reads its runner), with a filter,
// and the create-runner dialog.

import * as api from './api.js';
import {
  busy, dialog, empty, enumLabel, errorBox, field, fill, h, isAdmin, notice, pageTitle, phaseBadge,
  secret, select, table, time,
} from './ui.js';

export const PROVIDERS = [
  ['RUNNER_PROVIDER_LINUX_HOST', 'Linux host'],
  ['RUNNER_PROVIDER_AWS_EC2', 'AWS EC2'],
  ['RUNNER_PROVIDER_GCP', 'GCP'],
  ['RUNNER_PROVIDER_DESKTOP_MAC', 'Desktop (Mac)'],
  ['RUNNER_PROVIDER_MANAGED', 'Managed'],
  ['RUNNER_PROVIDER_DEV_AGENT', 'Dev agent'],
];

const PHASES = ['CREATED', 'ACTIVE', 'INACTIVE', 'DEGRADED', 'DELETING'];

export function providerLabel(value) {
  return PROVIDERS.find(([v]) => v === value)?.[1] || enumLabel(value, 'RUNNER_PROVIDER_');
}

export function regionOf(runner) {
  return runner.status?.region || runner.spec?.configuration?.region || '';
}

/** The line `corral runners create` prints to start a runner. */
export function startCommand(exchangeToken) {
  return `corral runner --server ${location.origin} --exchange-token ${exchangeToken}`;
}

/** Shows a new exchange token and the command that uses it. */
export function tokenPanel(what, exchangeToken) {
  return h(
    'div',
    { class: 'token-panel' },
    h('p', {}, `${what}. Its exchange token is shown only now and is valid for 24 hours.`),
    secret('Exchange token', exchangeToken, 'exchange-token'),
    secret('Start the runner on its host with', startCommand(exchangeToken), 'runner-command', true),
  );
}

function capabilityList(runner) {
  const caps = runner.status?.capabilities || [];
  if (!caps.length) return h('span', { class: 'muted' }, 'none');
  const labels = caps.map((c) => enumLabel(c, 'RUNNER_CAPABILITY_'));
  return h('span', { class: 'caps', title: labels.join(', ') }, labels.join(', '));
}

function row(runner) {
  const id = runner.runnerId;
  return h(
    'tr',
    { 'data-runner-id': id },
    h('th', { scope: 'row' }, h('a', { href: `#/runners/${id}` }, runner.name || id)),
    h('td', { 'data-label': 'Phase', 'data-testid': 'phase' }, phaseBadge(runner.status?.phase)),
    h('td', { 'data-label': 'Version' }, runner.status?.version || h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Region' }, regionOf(runner) || h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Provider' }, providerLabel(runner.provider)),
    h('td', { 'data-label': 'Last heartbeat' }, time(runner.status?.updatedAt)),
    h('td', { 'data-label': 'Capabilities' }, capabilityList(runner)),
  );
}

function matches(runner, filter) {
  const text = filter.text.toLowerCase();
  if (filter.phase && runner.status?.phase !== filter.phase) return false;
  if (filter.provider && runner.provider !== filter.provider) return false;
  if (!text) return true;
  return [runner.name, runner.runnerId, regionOf(runner), runner.status?.version]
    .some((v) => (v || '').toLowerCase().includes(text));
}

/**
 * Follows runner events until `signal` aborts, calling `onEvent` with each,
 * and with null whenever the stream (re)opens: what changed before it was
 * open must be read again. Reconnects after a failure. `onState` hears
 * 'live' / 'reconnecting'.
 */
export function watchRunners(onEvent, onState, signal, runnerId) {
  const filter = { resourceType: 'RESOURCE_TYPE_RUNNER' };
  if (runnerId) filter.resourceIds = [runnerId];
  let delay = 500;
  const opened = () => {
    delay = 500;
    onState('live');
    onEvent(null);
  };
  const loop = async () => {
    while (!signal.aborted) {
      try {
        await api.stream('EventService', 'WatchEvents', { organization: true, resourceTypeFilters: [filter] },
          onEvent, signal, opened);
      } catch (error) {
        if (signal.aborted || error.code === 'unauthenticated') return;
      }
      if (signal.aborted) return;
      onState('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  loop();
}

export async function render(main) {
  const runners = new Map();
  const filter = { text: '', phase: '', provider: '' };
  const live = h('span', { class: 'live is-connecting', 'data-testid': 'live' }, 'connecting…');
  const body = h('tbody');
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  const search = h('input', { type: 'search', name: 'search', placeholder: 'name, id, region, version' });
  const phase = select('phase', [['', 'any phase'], ...PHASES.map((p) => [`RUNNER_PHASE_${p}`, p.toLowerCase()])], '');
  const provider = select('provider', [['', 'any provider'], ...PROVIDERS], '');
  const list = h('div', { class: 'list' });

  const draw = () => {
    const shown = [...runners.values()]
      .filter((r) => matches(r, filter))
      .sort((a, b) => (a.name || '').localeCompare(b.name || ''));
    count.textContent = `${shown.length} of ${runners.size} runners`;
    if (!runners.size) {
      fill(list, empty(isAdmin() ? 'No runners yet: create one.' : 'No runners you may see.'));
      return;
    }
    fill(body, shown.map(row));
    if (!list.firstChild || list.firstChild.tagName === 'P') {
      fill(list, table('Runners', ['Name', 'Phase', 'Version', 'Region', 'Provider', 'Last heartbeat', 'Capabilities'], []));
      list.querySelector('tbody').replaceWith(body);
    }
  };
  const upsert = (runner) => {
    runners.set(runner.runnerId, runner);
    const existing = body.querySelector(`tr[data-runner-id="${CSS.escape(runner.runnerId)}"]`);
    if (existing && matches(runner, filter)) existing.replaceWith(row(runner));
    else draw();
  };
  const reload = async () => {
    const all = await api.listAll('RunnerService', 'ListRunners', {}, 'runners');
    runners.clear();
    for (const r of all) runners.set(r.runnerId, r);
    draw();
  };

  search.addEventListener('input', () => { filter.text = search.value.trim(); draw(); });
  phase.addEventListener('change', () => { filter.phase = phase.value; draw(); });
  provider.addEventListener('change', () => { filter.provider = provider.value; draw(); });

  const create = isAdmin()
    ? h('button', { type: 'button', class: 'primary', onclick: () => createDialog(upsert) }, 'Create runner')
    : null;
  fill(
    main,
    h('div', { class: 'page-head' }, pageTitle('Runners'), live, create),
    h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      field('Search', search), field('Phase', phase), field('Provider', provider)),
    count,
    list,
  );

  try {
    await reload();
  } catch (error) {
    fill(list, errorBox(error));
    return null;
  }

  const controller = new AbortController();
  watchRunners(async (event) => {
    try {
      if (!event) {
        await reload();
      } else if (event.operation === 'RESOURCE_OPERATION_DELETE') {
        runners.delete(event.resourceId);
        draw();
      } else if (event.resourceId) {
        const { runner } = await api.call('RunnerService', 'GetRunner', { runnerId: event.resourceId });
        if (runner) upsert(runner);
      }
    } catch (error) {
      if (error.code === 'not_found') {
        runners.delete(event.resourceId);
        draw();
      }
    }
  }, (state) => {
    live.textContent = state === 'live' ? 'live' : 'reconnecting…';
    live.className = `live is-${state}`;
  }, controller.signal);
  const ticker = setInterval(() => {
    for (const el of body.querySelectorAll('time')) {
      el.replaceWith(time(el.getAttribute('datetime')));
    }
  }, 15000);
  return () => {
    controller.abort();
    clearInterval(ticker);
  };
}

function createDialog(upsert) {
  dialog('Create a runner', () => {
    const name = h('input', { name: 'name', required: true, minlength: 3, maxlength: 127, autocomplete: 'off' });
    const provider = select('provider', PROVIDERS, 'RUNNER_PROVIDER_LINUX_HOST');
    const region = h('input', { name: 'region', maxlength: 64, autocomplete: 'off', placeholder: 'optional' });
    const out = h('div', { class: 'out' });
    const form = h(
      'form',
      {},
      field('Name', name),
      field('Provider', provider),
      field('Region', region, 'Where the runner is; shown in the fleet.'),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create')),
      out,
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(form, out, async () => {
        const request = { name: name.value.trim(), provider: provider.value };
        if (region.value.trim()) request.spec = { configuration: { region: region.value.trim() } };
        const created = await api.call('RunnerService', 'CreateRunner', request);
        upsert(created.runner);
        const id = created.runner.runnerId;
        notice(`Runner ${created.runner.name} created.`);
        fill(
          form,
          tokenPanel(`Runner ${id} created`, created.exchangeToken),
          h('p', {}, h('a', { href: `#/runners/${id}` }, `Open ${created.runner.name}`)),
        );
        form.querySelector('input').focus();
      });
    });
    return form;
  });
}
