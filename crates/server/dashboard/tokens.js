// The signed-in user's personal access tokens: list, create (shown once), delete.

import * as api from './api.js';
import {
  busy, confirmAction, empty, errorBox, errorText, field, fill, h, notice, pageTitle, secret, section, select,
  session, table, time,
} from './ui.js';

const VALIDITY = [
  ['2592000s', '30 days'],
  ['7776000s', '90 days'],
  ['31536000s', '1 year'],
  ['604800s', '7 days'],
];

export async function render(main) {
  const list = h('div');
  const description = h('input', { name: 'description', required: true, maxlength: 200, autocomplete: 'off' });
  const validFor = select('validFor', VALIDITY, '2592000s');
  const readOnly = h('input', { type: 'checkbox', name: 'readOnly' });
  const out = h('div', { class: 'out' });
  const form = h('form', { class: 'inline-form' }, field('Description', description), field('Valid for', validFor),
    field('Read-only', readOnly), h('button', { type: 'submit', class: 'primary' }, 'Create token'), out);
  fill(
    main,
    pageTitle('Access tokens'),
    h('p', { class: 'lead' }, 'Personal access tokens sign you in here and authorize the CLI and SDKs as you.'),
    section('New token', null, form),
    section('Your tokens', null, list),
  );
  const load = async () => {
    try {
      const tokens = await api.listAll('UserService', 'ListPersonalAccessTokens', { filter: { userIds: [session.current.userId] } }, 'personalAccessTokens');
      if (!tokens.length) {
        fill(list, empty('No tokens.'));
        return;
      }
      fill(list, table('Your tokens', ['Description', 'Created', 'Expires', 'Last used', 'Access', ''], tokens.map((t) => h('tr', {},
        h('th', { scope: 'row' }, t.description || t.id),
        h('td', { 'data-label': 'Created' }, time(t.createdAt)),
        h('td', { 'data-label': 'Expires' }, t.expiresAt ? h('time', { datetime: t.expiresAt }, new Date(t.expiresAt).toLocaleDateString()) : 'never'),
        h('td', { 'data-label': 'Last used' }, time(t.lastUsed)),
        h('td', { 'data-label': 'Access' }, t.readOnly ? 'read-only' : 'full'),
        h('td', {}, h('button', {
          type: 'button',
          class: 'small danger',
          onclick: async () => {
            if (!(await confirmAction(`Delete “${t.description}”?`, 'Whatever uses this token stops working. A session signed in with it ends too.'))) return;
            try {
              await api.call('UserService', 'DeletePersonalAccessToken', { personalAccessTokenId: t.id });
              notice('Token deleted.');
              load();
            } catch (error) {
              notice(errorText(error), 'error');
            }
          },
        }, 'Delete'))))));
    } catch (error) {
      fill(list, errorBox(error));
    }
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, out, async () => {
      const { token } = await api.call('UserService', 'CreatePersonalAccessToken', {
        userId: session.current.userId,
        description: description.value.trim(),
        validFor: validFor.value,
        readOnly: readOnly.checked,
      });
      form.reset(); // also clears the field's "user got it wrong" state
      fill(out, h('p', {}, 'Your new token, shown only now:'), secret('Token', token, 'new-pat'));
      load();
    });
  });
  await load();
  return null;
}
