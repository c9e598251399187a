// One runner: its status (live), configuration and desired phase, environment
// classes (forms from the runner's configuration schema), SCM integrations,
// policies, logs and support bundle, a new token, deletion.

import * as api from './api.js';
import { providerLabel, regionOf, tokenPanel, watchRunners } from './fleet.js';
import {
  busy, confirmAction, dialog, empty, enumLabel, errorBox, errorText, field, fill, h, isAdmin, notice,
  pageTitle, phaseBadge, section, select, session, table, time,
} from './ui.js';

const CHANNELS = [
  ['RUNNER_RELEASE_CHANNEL_STABLE', 'stable'],
  ['RUNNER_RELEASE_CHANNEL_LATEST', 'latest'],
];
const LOG_LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'].map((l) => [`LOG_LEVEL_${l}`, l.toLowerCase()]);
const ROLES = [
  ['RUNNER_ROLE_USER', 'user'],
  ['RUNNER_ROLE_ADMIN', 'admin'],
];

/**
 * Whether the signed-in user may administer the runner on this page: an
 * organization admin, or a member of a group with the runner's ADMIN role.
 * Set by `render` before anything is drawn.
 */
let manage = false;

async function mayAdminister(runnerId) {
  if (isAdmin()) return true;
  if (!session.current || session.current.readOnly) return false;
  try {
    const policies = await api.listAll('RunnerService', 'ListRunnerPolicies', { runnerId }, 'policies');
    const subject = { id: session.current.userId, principal: 'PRINCIPAL_USER' };
    for (const policy of policies.filter((p) => p.role === 'RUNNER_ROLE_ADMIN')) {
      try {
        await api.call('GroupService', 'GetMembership', { groupId: policy.groupId, subject });
        return true;
      } catch {
        // Not in this group.
      }
    }
  } catch {
    // The policies are not readable: nothing to administer.
  }
  return false;
}

function dl(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

function muted(text) {
  return h('span', { class: 'muted' }, text);
}

/** The replica the runner's stream is on (RunnerStatus.gatewayInfo). */
function replica(status) {
  const gateway = status?.gatewayInfo?.gateway;
  if (!gateway?.name && !gateway?.url) return muted('not connected');
  // A protobuf Duration in JSON: "0.008786s".
  const seconds = parseFloat(status.gatewayInfo.latency || '');
  const latency = Number.isFinite(seconds) ? ` · ${(seconds * 1000).toFixed(1)} ms` : '';
  return [gateway.name || gateway.url, gateway.region ? ` (${gateway.region})` : '', latency];
}

function overview(runner) {
  const s = runner.status || {};
  const caps = (s.capabilities || []).map((c) => h('li', {}, enumLabel(c, 'RUNNER_CAPABILITY_')));
  return dl([
    ['ID', h('code', {}, runner.runnerId)],
    ['Phase', h('span', { 'data-testid': 'runner-phase' }, phaseBadge(s.phase))],
    ['Desired phase', enumLabel(runner.spec?.desiredPhase, 'RUNNER_PHASE_')],
    s.message ? ['Message', s.message] : null,
    ['Version', s.version || muted('not reported')],
    ['Region', regionOf(runner) || muted('none')],
    ['Provider', providerLabel(runner.provider)],
    ['Kind', enumLabel(runner.kind, 'RUNNER_KIND_')],
    ['Last heartbeat', time(s.updatedAt)],
    ['Connected to replica', h('span', { 'data-testid': 'replica' }, replica(s))],
    ['Created', time(runner.createdAt)],
    s.systemDetails ? ['System', s.systemDetails] : null,
    ['Capabilities', caps.length ? h('ul', { class: 'inline' }, caps) : muted('none')],
  ]);
}

async function openRunnerUrl(runner, which) {
  const url = which === 'logs' ? runner.status?.logUrl : runner.status?.supportBundleUrl;
  if (!url) {
    notice(`Runner ${runner.name} has reported no ${which === 'logs' ? 'log' : 'support bundle'} URL yet: is it running?`, 'error');
    return;
  }
  try {
    const { accessToken } = await api.call('RunnerService', 'CreateRunnerLogsToken', { runnerId: runner.runnerId });
    const target = new URL(url);
    target.searchParams.set('token', accessToken);
    // The runner serves these itself (another origin): a navigation, not a
    // fetch. The bundle is an attachment (this page stays); the logs are
    // text, opened in a new tab.
    const attrs = which === 'logs' ? { target: '_blank', rel: 'noopener noreferrer' } : { rel: 'noreferrer' };
    const link = h('a', { href: target.href, ...attrs });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    notice(errorText(error), 'error');
  }
}

function hourInput(name, value) {
  return h('input', { name, type: 'number', min: 0, max: 23, step: 1, inputmode: 'numeric', value: value ?? '', placeholder: 'none' });
}

function configurationForm(runner, onSaved) {
  const c = runner.spec?.configuration || {};
  const m = c.metrics || {};
  const admin = manage;
  const channel = select('releaseChannel', CHANNELS, c.releaseChannel || 'RUNNER_RELEASE_CHANNEL_STABLE');
  const autoUpdate = h('input', { type: 'checkbox', name: 'autoUpdate', checked: c.autoUpdate });
  const start = hourInput('updateWindowStart', c.updateWindow?.startHour);
  const end = hourInput('updateWindowEnd', c.updateWindow?.endHour);
  const level = select('logLevel', LOG_LEVELS, c.logLevel || 'LOG_LEVEL_INFO');
  const metrics = h('input', { type: 'checkbox', name: 'metricsEnabled', checked: m.enabled });
  const metricsUrl = h('input', { type: 'url', name: 'metricsUrl', value: m.url || '', placeholder: 'https://…/api/v1/write' });
  const metricsUser = h('input', { name: 'metricsUsername', value: m.username || '', autocomplete: 'off' });
  const metricsPassword = h('input', { type: 'password', name: 'metricsPassword', autocomplete: 'new-password', placeholder: 'unchanged' });
  const desired = select('desiredPhase', [
    ['RUNNER_PHASE_ACTIVE', 'active'],
    ['RUNNER_PHASE_INACTIVE', 'inactive (cordoned)'],
  ], runner.spec?.desiredPhase === 'RUNNER_PHASE_INACTIVE' ? 'RUNNER_PHASE_INACTIVE' : 'RUNNER_PHASE_ACTIVE');
  const out = h('div', { class: 'out' });
  const form = h(
    'form',
    { class: 'grid-form', 'aria-label': 'Configuration' },
    field('Desired phase', desired, 'Inactive: the runner takes no new work.'),
    field('Release channel', channel),
    field('Update automatically', autoUpdate),
    h('fieldset', {}, h('legend', {}, 'Update window (UTC hours)'),
      h('div', { class: 'row' }, field('From hour', start), field('To hour', end)),
      h('p', { class: 'hint' }, 'Empty: updates at any time. At least 2 hours; without an end, 2 hours.')),
    field('Log level', level),
    h('fieldset', {}, h('legend', {}, 'Metrics'),
      field('Push metrics', metrics), field('Remote-write URL', metricsUrl),
      field('Username', metricsUser), field('Password', metricsPassword)),
    admin ? h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save configuration')) : null,
    out,
  );
  if (!admin) form.querySelectorAll('input, select').forEach((el) => { el.disabled = true; });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, out, async () => {
      const window = {};
      if (start.value !== '') window.startHour = Number(start.value);
      if (end.value !== '') window.endHour = Number(end.value);
      const metricsConfig = { enabled: metrics.checked, url: metricsUrl.value.trim(), username: metricsUser.value.trim() };
      if (metricsPassword.value) metricsConfig.password = metricsPassword.value;
      const { runner: updated } = await api.call('RunnerService', 'UpdateRunner', {
        runnerId: runner.runnerId,
        spec: {
          desiredPhase: desired.value,
          configuration: {
            releaseChannel: channel.value,
            autoUpdate: autoUpdate.checked,
            logLevel: level.value,
            updateWindow: window,
            metrics: metricsConfig,
          },
        },
      });
      metricsPassword.value = '';
      fill(out, h('p', { class: 'ok', role: 'status' }, 'Saved.'));
      if (updated) onSaved(updated);
    });
  });
  return form;
}

// -- environment classes ---------------------------------------------------

/** One input per schema field; returns [element, read()] pairs. */
function schemaInputs(fields) {
  return fields.filter((f) => !f.display).map((f) => {
    let input;
    if (f.bool) {
      input = h('input', { type: 'checkbox', name: f.id, checked: f.bool.default });
    } else if (f.int) {
      input = h('input', { type: 'number', name: f.id, step: 1, min: f.int.min, max: f.int.max, value: f.int.default ?? '', required: f.required });
    } else if (f.enum) {
      const values = (f.enum.possibleValues || []).map((v) => [v.title, v.subtitle ? `${v.title} — ${v.subtitle}` : v.title]);
      input = select(f.id, f.required ? values : [['', '(default)'], ...values], f.enum.defaultValue?.title || '');
    } else {
      // The pattern is checked by ValidateRunnerConfiguration (the runner's regex dialect).
      input = h('input', { name: f.id, value: f.string?.default || '', required: f.required, type: f.secret ? 'password' : 'text' });
    }
    const label = f.required ? `${f.name || f.id} (required)` : f.name || f.id;
    const read = () => {
      if (f.bool) return String(input.checked);
      return input.value.trim();
    };
    return { id: f.id, element: field(label, input, f.description), input, read };
  });
}

function environmentClassDialog(runner, schema, onDone) {
  dialog('Add an environment class', () => {
    const name = h('input', { name: 'displayName', required: true, maxlength: 127 });
    const description = h('input', { name: 'description', required: true, minlength: 3, maxlength: 200 });
    const inputs = schemaInputs(schema.environmentClasses || []);
    const out = h('div', { class: 'out' });
    const form = h(
      'form',
      {},
      field('Name', name),
      field('Description', description),
      inputs.length ? h('fieldset', {}, h('legend', {}, 'Configuration'), inputs.map((i) => i.element)) : null,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Validate and add')),
      out,
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(form, out, async () => {
        const configuration = inputs.map((i) => ({ key: i.id, value: i.read() })).filter((kv) => kv.value !== '');
        const environmentClass = {
          runnerId: runner.runnerId,
          displayName: name.value.trim(),
          description: description.value.trim(),
          configuration,
        };
        const { environmentClass: result } = await api.call('RunnerConfigurationService', 'ValidateRunnerConfiguration', {
          runnerId: runner.runnerId,
          environmentClass,
        });
        if (result && !result.valid) {
          const problems = [
            result.displayNameError && `Name: ${result.displayNameError}`,
            result.descriptionError && `Description: ${result.descriptionError}`,
            ...(result.configurationErrors || []).map((e) => `${e.key}: ${e.error}`),
          ].filter(Boolean);
          fill(out, h('div', { class: 'error', role: 'alert' }, h('p', {}, 'Not valid:'), h('ul', {}, problems.map((p) => h('li', {}, p)))));
          return;
        }
        await api.call('RunnerConfigurationService', 'CreateEnvironmentClass', environmentClass);
        notice(`Environment class ${environmentClass.displayName} added.`);
        onDone();
      });
    });
    return form;
  });
}

/** Renames or redescribes a class (its configuration is fixed once created). */
function editClass(environmentClass, reload) {
  dialog(`Edit ${environmentClass.displayName}`, (close) => {
    const name = h('input', { name: 'displayName', required: true, maxlength: 127, value: environmentClass.displayName });
    const description = h('input', { name: 'description', required: true, minlength: 3, maxlength: 200, value: environmentClass.description || '' });
    const out = h('div', { class: 'out' });
    const form = h('form', {}, field('Name', name), field('Description', description),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save')), out);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(form, out, async () => {
        await api.call('RunnerConfigurationService', 'UpdateEnvironmentClass', {
          environmentClassId: environmentClass.id,
          displayName: name.value.trim(),
          description: description.value.trim(),
        });
        notice(`Environment class ${name.value.trim()} saved.`);
        close();
        reload();
      });
    });
    return form;
  });
}

async function environmentClasses(runner, schema) {
  const body = h('div');
  const admin = manage;
  const load = async () => {
    try {
      const classes = await api.listAll('RunnerConfigurationService', 'ListEnvironmentClasses', { filter: { runnerIds: [runner.runnerId] } }, 'environmentClasses');
      if (!classes.length) {
        fill(body, empty('No environment classes.'));
        return;
      }
      fill(body, table('Environment classes', ['Name', 'Configuration', 'Enabled', ''], classes.map((c) => {
        const toggle = h('input', { type: 'checkbox', checked: c.enabled, disabled: !admin, 'aria-label': `${c.displayName} enabled` });
        toggle.addEventListener('change', async () => {
          try {
            await api.call('RunnerConfigurationService', 'UpdateEnvironmentClass', { environmentClassId: c.id, enabled: toggle.checked });
            notice(`${c.displayName} ${toggle.checked ? 'enabled' : 'disabled'}.`);
          } catch (error) {
            toggle.checked = !toggle.checked;
            notice(errorText(error), 'error');
          }
        });
        const edit = admin ? h('button', { type: 'button', class: 'small', onclick: () => editClass(c, load) }, 'Edit') : null;
        return h('tr', {},
          h('th', { scope: 'row' }, c.displayName, c.description ? h('small', { class: 'block muted' }, c.description) : null),
          h('td', { 'data-label': 'Configuration' }, (c.configuration || []).map((kv) => `${kv.key}=${kv.value}`).join(', ')),
          h('td', { 'data-label': 'Enabled' }, toggle),
          h('td', {}, edit));
      })));
    } catch (error) {
      fill(body, errorBox(error));
    }
  };
  await load();
  const add = admin && schema
    ? h('button', { type: 'button', onclick: () => environmentClassDialog(runner, schema, () => { document.querySelector('dialog[open]')?.close(); load(); }) }, 'Add environment class')
    : null;
  return section('Environment classes', add, body);
}

// -- SCM integrations -------------------------------------------------------

function integrationDialog(runner, schema, onDone) {
  dialog('Add an SCM integration', () => {
    const scms = (schema?.scm || []).map((s) => [s.scmId, s.name || s.scmId]);
    const scm = select('scmId', scms.length ? scms : [['github', 'GitHub']], scms[0]?.[0] || 'github');
    const host = h('input', { name: 'host', required: true, placeholder: 'github.com', autocomplete: 'off' });
    const pat = h('input', { type: 'checkbox', name: 'pat', checked: true });
    const clientId = h('input', { name: 'oauthClientId', autocomplete: 'off' });
    const clientSecret = h('input', { name: 'oauthClientSecret', type: 'password', autocomplete: 'new-password' });
    const issuer = h('input', { name: 'issuerUrl', type: 'url', placeholder: 'optional' });
    const hostHint = () => {
      const entry = (schema?.scm || []).find((s) => s.scmId === scm.value);
      if (entry?.defaultHosts?.length && !host.value) host.placeholder = entry.defaultHosts[0];
    };
    scm.addEventListener('change', hostHint);
    hostHint();
    const out = h('div', { class: 'out' });
    const form = h('form', {},
      field('SCM', scm), field('Host', host),
      field('Users may add personal access tokens', pat),
      h('fieldset', {}, h('legend', {}, 'OAuth app (optional)'),
        field('Client ID', clientId), field('Client secret', clientSecret, 'Sealed to the runner; the server cannot read it.'),
        field('Issuer URL', issuer)),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Validate and add')),
      out);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(form, out, async () => {
        const integration = { scmId: scm.value, host: host.value.trim(), pat: pat.checked };
        if (clientId.value.trim()) integration.oauthClientId = clientId.value.trim();
        if (clientSecret.value) integration.oauthPlaintextClientSecret = clientSecret.value;
        if (issuer.value.trim()) integration.issuerUrl = issuer.value.trim();
        const { scmIntegration: result } = await api.call('RunnerConfigurationService', 'ValidateRunnerConfiguration', {
          runnerId: runner.runnerId,
          scmIntegration: integration,
        });
        if (result && !result.valid) {
          const problems = [result.scmIdError, result.hostError, result.oauthError, result.patError].filter(Boolean);
          fill(out, h('div', { class: 'error', role: 'alert' }, h('p', {}, 'Not valid:'), h('ul', {}, problems.map((p) => h('li', {}, p)))));
          return;
        }
        await api.call('RunnerConfigurationService', 'CreateSCMIntegration', { runnerId: runner.runnerId, ...integration });
        notice(`SCM integration for ${integration.host} added.`);
        onDone();
      });
    });
    return form;
  });
}

/** Whether users may keep personal tokens for the integration's host (admins change it). */
function patToggle(integration) {
  const toggle = h('input', { type: 'checkbox', checked: integration.pat, disabled: !manage, 'aria-label': `Personal tokens allowed for ${integration.host}` });
  toggle.addEventListener('change', async () => {
    try {
      await api.call('RunnerConfigurationService', 'UpdateSCMIntegration', { id: integration.id, pat: toggle.checked });
      notice(`Personal tokens ${toggle.checked ? 'allowed' : 'no longer allowed'} for ${integration.host}.`);
    } catch (error) {
      toggle.checked = !toggle.checked;
      notice(errorText(error), 'error');
    }
  });
  return h('label', { class: 'inline-check' }, toggle, ' allowed');
}

async function integrations(runner, schema) {
  const body = h('div');
  const admin = manage;
  const load = async () => {
    try {
      const list = await api.listAll('RunnerConfigurationService', 'ListSCMIntegrations', { filter: { runnerIds: [runner.runnerId] } }, 'integrations');
      if (!list.length) {
        fill(body, empty('No SCM integrations.'));
        return;
      }
      fill(body, table('SCM integrations', ['Host', 'SCM', 'OAuth', 'Personal tokens', ''], list.map((i) => {
        const remove = admin ? h('button', {
          type: 'button',
          class: 'small danger',
          onclick: async () => {
            if (!(await confirmAction('Delete the integration?', `Users lose access to ${i.host} through this runner.`))) return;
            try {
              await api.call('RunnerConfigurationService', 'DeleteSCMIntegration', { id: i.id });
              notice(`Integration for ${i.host} deleted.`);
              load();
            } catch (error) {
              notice(errorText(error), 'error');
            }
          },
        }, 'Delete') : null;
        return h('tr', {},
          h('th', { scope: 'row' }, i.host),
          h('td', { 'data-label': 'SCM' }, i.scmId),
          h('td', { 'data-label': 'OAuth' }, i.oauth?.clientId ? `client ${i.oauth.clientId}` : muted('none')),
          h('td', { 'data-label': 'Personal tokens' }, patToggle(i)),
          h('td', {}, remove));
      })));
    } catch (error) {
      fill(body, errorBox(error));
    }
  };
  await load();
  const add = admin
    ? h('button', { type: 'button', onclick: () => integrationDialog(runner, schema, () => { document.querySelector('dialog[open]')?.close(); load(); }) }, 'Add SCM integration')
    : null;
  return section('SCM integrations', add, body);
}

// -- policies ----------------------------------------------------------------

async function policies(runner) {
  const body = h('div');
  const admin = manage;
  let groups = [];
  try {
    groups = await api.listAll('GroupService', 'ListGroups', {}, 'groups');
  } catch {
    groups = [];
  }
  const groupName = (id) => groups.find((g) => g.id === id)?.name || id;
  const load = async () => {
    try {
      const list = await api.listAll('RunnerService', 'ListRunnerPolicies', { runnerId: runner.runnerId }, 'policies');
      if (!list.length) {
        fill(body, empty('No policies: only organization admins may use this runner.'));
        return;
      }
      fill(body, table('Policies', ['Group', 'Role', ''], list.map((p) => {
        const role = select('role', ROLES, p.role);
        role.setAttribute('aria-label', `Role of ${groupName(p.groupId)}`);
        role.disabled = !admin;
        role.addEventListener('change', async () => {
          try {
            await api.call('RunnerService', 'UpdateRunnerPolicy', { runnerId: runner.runnerId, groupId: p.groupId, role: role.value });
            notice(`${groupName(p.groupId)} is now ${enumLabel(role.value, 'RUNNER_ROLE_')}.`);
          } catch (error) {
            notice(errorText(error), 'error');
          }
        });
        const remove = admin ? h('button', {
          type: 'button',
          class: 'small danger',
          onclick: async () => {
            try {
              await api.call('RunnerService', 'DeleteRunnerPolicy', { runnerId: runner.runnerId, groupId: p.groupId });
              notice(`Policy for ${groupName(p.groupId)} removed.`);
              load();
            } catch (error) {
              notice(errorText(error), 'error');
            }
          },
        }, 'Remove') : null;
        return h('tr', {}, h('th', { scope: 'row' }, groupName(p.groupId)), h('td', { 'data-label': 'Role' }, role), h('td', {}, remove));
      })));
    } catch (error) {
      fill(body, errorBox(error));
    }
  };
  await load();
  let add = null;
  if (admin && groups.length) {
    const group = select('groupId', groups.map((g) => [g.id, g.name]), groups[0].id);
    const role = select('role', ROLES, 'RUNNER_ROLE_USER');
    const out = h('div', { class: 'out' });
    add = h('form', { class: 'inline-form' }, field('Group', group), field('Role', role),
      h('button', { type: 'submit' }, 'Add policy'), out);
    add.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(add, out, async () => {
        await api.call('RunnerService', 'CreateRunnerPolicy', { runnerId: runner.runnerId, groupId: group.value, role: role.value });
        notice(`${groupName(group.value)} may use the runner as ${enumLabel(role.value, 'RUNNER_ROLE_')}.`);
        load();
      });
    });
  }
  return section('Policies', null, body, add);
}

// -- the page ------------------------------------------------------------------

export async function render(main, id) {
  let runner;
  try {
    ({ runner } = await api.call('RunnerService', 'GetRunner', { runnerId: id }));
  } catch (error) {
    fill(main, pageTitle('Runner'), errorBox(error), h('p', {}, h('a', { href: '#/runners' }, 'Back to the runners')));
    return null;
  }
  manage = await mayAdminister(id);
  let schema = null;
  try {
    ({ schema } = await api.call('RunnerConfigurationService', 'GetRunnerConfigurationSchema', { runnerId: id }));
  } catch {
    schema = null;
  }
  const admin = manage;
  const facts = h('div', {}, overview(runner));
  const live = h('span', { class: 'live is-connecting' }, 'connecting…');
  const title = pageTitle(runner.name || id);
  const actions = h('div', { class: 'actions wrap' },
    h('button', { type: 'button', onclick: () => openRunnerUrl(runner, 'logs') }, 'Download logs'),
    h('button', { type: 'button', onclick: () => openRunnerUrl(runner, 'bundle') }, 'Download support bundle'),
    admin ? h('button', { type: 'button', onclick: () => rotate(runner) }, 'New runner token') : null,
    admin ? h('button', { type: 'button', class: 'danger', onclick: () => remove(runner) }, 'Delete runner') : null);
  const configuration = h('div');
  const showConfiguration = () => fill(configuration, configurationForm(runner, (updated) => {
    runner = updated;
    fill(facts, overview(runner));
  }));
  showConfiguration();
  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/runners' }, 'Runners'), ' / '),
    h('div', { class: 'page-head' }, title, live),
    actions,
    section('Status', null, facts),
    section('Configuration', null, configuration),
  );
  const rest = await Promise.all([environmentClasses(runner, schema), integrations(runner, schema), policies(runner)]);
  main.append(...rest);

  const controller = new AbortController();
  watchRunners(async (event) => {
    if (event?.operation === 'RESOURCE_OPERATION_DELETE') {
      notice(`Runner ${runner.name} was deleted.`);
      location.hash = '#/runners';
      return;
    }
    try {
      ({ runner } = await api.call('RunnerService', 'GetRunner', { runnerId: id }));
      fill(facts, overview(runner));
    } catch (error) {
      if (error.code === 'not_found') location.hash = '#/runners';
    }
  }, (state) => {
    live.textContent = state === 'live' ? 'live' : 'reconnecting…';
    live.className = `live is-${state}`;
  }, controller.signal, id);
  return () => controller.abort();
}

async function rotate(runner) {
  if (!(await confirmAction('Create a new runner token?', 'A new one-time exchange token for this runner: use it to start the runner on a new host or after its credentials were lost.', 'Create token'))) return;
  try {
    const { exchangeToken } = await api.call('RunnerService', 'CreateRunnerToken', { runnerId: runner.runnerId });
    dialog('New runner token', () => tokenPanel(`New exchange token for runner ${runner.runnerId}`, exchangeToken));
  } catch (error) {
    notice(errorText(error), 'error');
  }
}

async function remove(runner) {
  if (!(await confirmAction(`Delete ${runner.name}?`, 'The runner is told to stop and is removed with its environment classes, integrations and policies. This cannot be undone.', 'Delete runner'))) return;
  try {
    await api.call('RunnerService', 'DeleteRunner', { runnerId: runner.runnerId });
    notice(`Runner ${runner.name} is being deleted.`);
    location.hash = '#/runners';
  } catch (error) {
    notice(errorText(error), 'error');
  }
}
