// The dashboard's shell: who is signed in, the hash routes, the navigation.
// Each page module exports `render(main, ...params)`, which may return a
// function that stops what the page started (an event stream).

import * as api from './api.js';
import { fill, h, notice, session, errorText } from './ui.js';
import * as signin from './signin.js';
import * as fleet from './fleet.js';
import * as runner from './runner.js';
import * as scm from './scm.js';
import * as access from './access.js';
import * as tokens from './tokens.js';

const routes = [
  [/^#\/runners\/?$/, fleet.render],
  [/^#\/runners\/([\w-]+)$/, runner.render],
  [/^#\/scm$/, scm.render],
  [/^#\/groups$/, access.render],
  [/^#\/groups\/([\w-]+)$/, access.renderGroup],
  [/^#\/members$/, access.renderMembers],
  [/^#\/tokens$/, tokens.render],
];

const main = document.getElementById('main');
let stop = null;
let generation = 0;

function showSignedIn(current) {
  session.current = current;
  document.getElementById('nav').hidden = !current;
  document.getElementById('who').hidden = !current;
  fill(
    document.getElementById('who-name'),
    current ? [current.name || current.email, ' ', h('span', { class: 'badge' }, current.readOnly ? `${current.role}, read-only` : current.role)] : null,
  );
}

async function route() {
  if (stop) stop();
  stop = null;
  generation += 1;
  document.querySelectorAll('dialog[open]').forEach((d) => d.close());
  if (!session.current) {
    signin.render(main, signedIn);
    return;
  }
  const hash = location.hash || '#/runners';
  for (const link of document.querySelectorAll('#nav a')) {
    const here = hash === link.getAttribute('href') || hash.startsWith(`${link.getAttribute('href')}/`);
    if (here) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  for (const [pattern, render] of routes) {
    const match = hash.match(pattern);
    if (match) {
      // Each page draws into a view of its own: a page still loading when
      // the route changes draws into a detached view, and is stopped.
      const view = h('div');
      fill(main, view);
      const mine = ++generation;
      try {
        const stopper = (await render(view, ...match.slice(1))) || null;
        if (mine === generation) stop = stopper;
        else if (stopper) stopper();
      } catch (error) {
        fill(view, h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, errorText(error)));
      }
      return;
    }
  }
  fill(main, h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, h('a', { href: '#/runners' }, 'Back to the runners')));
}

/** After a sign-in: back to an OAuth callback that sent the browser here, or on. */
function signedIn(current) {
  const next = new URLSearchParams(location.search).get('next') || '';
  if (next.startsWith('/auth/oauth2/callback')) {
    location.assign(next);
    return;
  }
  if (location.search) history.replaceState(null, '', `/${location.hash || '#/runners'}`);
  showSignedIn(current);
  if (!location.hash || location.hash === '#/') location.hash = '#/runners';
  else route();
}

api.whenSignedOut(() => {
  if (!session.current) return;
  showSignedIn(null);
  notice('Your session has ended; sign in again.', 'error');
  route();
});

document.getElementById('sign-out').addEventListener('click', async () => {
  try {
    await api.signOut();
  } catch (error) {
    notice(errorText(error), 'error');
  }
  showSignedIn(null);
  notice('Signed out.');
  route();
});

window.addEventListener('hashchange', route);

async function start() {
  try {
    showSignedIn(await api.currentSession());
  } catch (error) {
    showSignedIn(null);
    notice(errorText(error), 'error');
  }
  route();
}

start();
