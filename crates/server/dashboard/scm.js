// The signed-in user's SCM accounts: host tokens per runner, and "connect",
// which asks the runner how (CheckAuthenticationForHost), then signs in with
// the SCM's OAuth (same tab) or takes a personal access token.

import * as api from './api.js';
import {
  busy, confirmAction, empty, enumLabel, errorBox, errorText, field, fill, h, notice, pageTitle, section,
  select, session, table,
} from './ui.js';

export async function render(main) {
  const list = h('div');
  const connectArea = h('div');
  fill(
    main,
    pageTitle('SCM accounts'),
    h('p', { class: 'lead' }, 'The tokens runners use to reach your source hosts on your behalf. Each belongs to you and one runner.'),
    section('Connected accounts', null, list),
    section('Connect an account', null, connectArea),
  );
  let runners = [];
  try {
    runners = await api.listAll('RunnerService', 'ListRunners', {}, 'runners');
  } catch (error) {
    fill(connectArea, errorBox(error));
  }
  const runnerName = (id) => runners.find((r) => r.runnerId === id)?.name || id;

  const load = async () => {
    try {
      const tokens = await api.listAll('RunnerConfigurationService', 'ListHostAuthenticationTokens',
        { filter: { subjectId: session.current.userId } }, 'tokens');
      if (!tokens.length) {
        fill(list, empty('No accounts connected yet.'));
        return;
      }
      fill(list, table('Connected accounts', ['Host', 'Runner', 'Kind', 'Expires', 'Scopes', ''], tokens.map((t) => {
        const remove = h('button', {
          type: 'button',
          class: 'small danger',
          onclick: async () => {
            if (!(await confirmAction(`Disconnect ${t.host}?`, 'The runner can no longer reach this host for you.', 'Disconnect'))) return;
            try {
              await api.call('RunnerConfigurationService', 'DeleteHostAuthenticationToken', { id: t.id });
              notice(`${t.host} disconnected.`);
              load();
            } catch (error) {
              notice(errorText(error), 'error');
            }
          },
        }, 'Disconnect');
        return h('tr', { 'data-host': t.host },
          h('th', { scope: 'row' }, t.host),
          h('td', { 'data-label': 'Runner' }, runnerName(t.runnerId)),
          h('td', { 'data-label': 'Kind', 'data-testid': 'token-source' }, enumLabel(t.source, 'HOST_AUTHENTICATION_TOKEN_SOURCE_')),
          h('td', { 'data-label': 'Expires' }, t.expiresAt ? h('time', { datetime: t.expiresAt }, new Date(t.expiresAt).toLocaleString()) : 'never'),
          h('td', { 'data-label': 'Scopes' }, (t.scopes || []).join(', ')),
          h('td', {}, remove));
      })));
    } catch (error) {
      fill(list, errorBox(error));
    }
  };
  await load();
  if (!runners.length) {
    fill(connectArea, empty('No runner you may use: ask an admin for a runner policy.'));
    return null;
  }
  fill(connectArea, connectForm(runners, load));
  return null;
}

function connectForm(runners, reload) {
  // Active runners first: only a connected runner can check a host.
  const ordered = [...runners].sort((a, b) => (b.status?.phase === 'RUNNER_PHASE_ACTIVE') - (a.status?.phase === 'RUNNER_PHASE_ACTIVE'));
  const runner = select('runnerId', ordered.map((r) => [r.runnerId, r.name]), ordered[0].runnerId);
  const hosts = h('datalist', { id: 'scm-hosts' });
  const host = h('input', { name: 'host', required: true, list: 'scm-hosts', placeholder: 'github.com', autocomplete: 'off' });
  const suggest = async () => {
    try {
      const integrations = await api.listAll('RunnerConfigurationService', 'ListSCMIntegrations', { filter: { runnerIds: [runner.value] } }, 'integrations');
      fill(hosts, integrations.map((i) => h('option', { value: i.host.replace(/^https?:\/\//, '') })));
      if (!host.value && integrations.length) host.placeholder = integrations[0].host.replace(/^https?:\/\//, '');
    } catch {
      fill(hosts);
    }
  };
  runner.addEventListener('change', suggest);
  suggest();
  const out = h('div', { class: 'out' });
  const form = h('form', { class: 'inline-form' }, field('Runner', runner), field('Host', host), hosts,
    h('button', { type: 'submit', class: 'primary' }, 'Connect'));
  const wrap = h('div', {}, form, out);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, out, async () => {
      const target = { runnerId: runner.value, host: host.value.trim() };
      const answer = await api.call('RunnerService', 'CheckAuthenticationForHost', target);
      fill(out, ways(target, answer, reload));
      out.querySelector('button, input')?.focus();
    });
  });
  return wrap;
}

/** What the runner offers for the host: OAuth, a PAT, or nothing needed. */
function ways(target, answer, reload) {
  const name = answer.scmName || answer.scmId || target.host;
  if (answer.authenticated) {
    return h('p', { class: 'ok', role: 'status' }, `You are already connected to ${name} at ${target.host}.`);
  }
  const parts = [];
  const oauth = answer.supportsOauth2?.authUrl;
  if (oauth) {
    parts.push(h('div', { class: 'way' },
      h('h3', {}, `Sign in with ${name}`),
      h('p', {}, `You go to ${name} to allow access and come back here.`),
      h('button', { type: 'button', class: 'primary', onclick: () => location.assign(oauth) }, `Sign in with ${name}`)));
  }
  const pat = answer.supportsPat;
  if (pat) {
    const token = h('input', { name: 'token', type: 'password', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: pat.example || '' });
    const out = h('div', { class: 'out' });
    const form = h('form', {},
      h('h3', {}, 'Use a personal access token'),
      pat.createUrl ? h('p', {}, 'Create one at ', h('a', { href: pat.createUrl, target: '_blank', rel: 'noopener noreferrer' }, pat.createUrl),
        pat.requiredScopes?.length ? ` with the scopes ${pat.requiredScopes.join(', ')}.` : '.') : null,
      field('Personal access token', token),
      h('button', { type: 'submit' }, 'Save token'),
      out);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(form, out, async () => {
        await api.call('RunnerConfigurationService', 'CreateHostAuthenticationToken', {
          runnerId: target.runnerId,
          host: target.host,
          token: token.value.trim(),
          source: 'HOST_AUTHENTICATION_TOKEN_SOURCE_PAT',
        });
        form.reset();
        fill(out, h('p', { class: 'ok', role: 'status' }, `Connected to ${target.host}.`));
        notice(`Token for ${target.host} saved.`);
        reload();
      });
    });
    parts.push(h('div', { class: 'way' }, form));
  }
  if (!parts.length) {
    return h('p', { class: 'error', role: 'alert' }, `The runner offers no way to sign in to ${target.host}: an admin adds an SCM integration for it.`);
  }
  return h('div', { class: 'ways' }, parts);
}
