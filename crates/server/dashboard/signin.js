// Sign-in with a personal access token; the server answers with a session cookie.

import * as api from './api.js';
import { busy, fill, h, pageTitle } from './ui.js';

export function render(main, signedIn) {
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'crl_pat_…',
    'aria-describedby': 'token-hint',
  });
  const out = h('div', { class: 'out' });
  const form = h(
    'form',
    { class: 'signin panel' },
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'Personal access token'), input),
    h(
      'p',
      { id: 'token-hint', class: 'hint' },
      'No token yet? The first admin\u2019s token is in the server\u2019s data directory (',
      h('code', {}, 'admin-token'),
      '); an admin creates one for you with ',
      h('code', {}, 'corral admin user add --email you@example.com'),
      ', and once signed in you can create more under Access tokens.',
    ),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    out,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, out, async () => {
      const current = await api.signIn(input.value.trim());
      input.value = '';
      signedIn(current);
    });
  });
  fill(main, pageTitle('Sign in to corral', false), form);
  input.focus();
}
