// Small shared pieces: building elements, dialogs, notices, errors, formats.

/** The signed-in session (set by app.js) and what it may do. */
export const session = { current: null };

export function isAdmin() {
  return session.current?.role === 'admin' && !session.current?.readOnly;
}

/** h('button', {type: 'button', onclick: fn}, 'text', child, …) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'for') el.htmlFor = value;
    else if (key === 'value') el.value = value;
    else if (key === 'checked') el.checked = Boolean(value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
export function uid(prefix = 'f') {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form control; `input` gets an id when it has none. */
export function field(label, input, hint) {
  if (!input.id) input.id = uid();
  const hintEl = hint ? h('small', { class: 'hint', id: uid('hint') }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  if (input.type === 'checkbox') {
    return h('div', { class: 'field check' }, input, h('label', { for: input.id }, label), hintEl);
  }
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hintEl);
}

export function select(name, options, value) {
  return h(
    'select',
    { name },
    options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)),
  );
}

/** `RUNNER_PHASE_ACTIVE`, `RUNNER_PHASE_` → `active` */
export function enumLabel(value, prefix) {
  if (!value) return 'unspecified';
  return value.replace(prefix, '').toLowerCase().replaceAll('_', ' ');
}

export function ago(timestamp) {
  if (!timestamp) return 'never';
  const seconds = Math.round((Date.now() - Date.parse(timestamp)) / 1000);
  if (Number.isNaN(seconds)) return timestamp;
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(timestamp).toLocaleString();
}

export function time(timestamp) {
  if (!timestamp) return h('span', { class: 'muted' }, 'never');
  return h('time', { datetime: timestamp, title: timestamp }, ago(timestamp));
}

/** A phase badge: colour and text both say it. */
export function phaseBadge(phase) {
  const label = enumLabel(phase, 'RUNNER_PHASE_');
  return h('span', { class: `badge phase-${label.replaceAll(' ', '-')}` }, label);
}

/** A one-line status message for everyone (screen readers too). */
export function notice(message, kind = 'ok') {
  const el = document.getElementById('notice');
  fill(el, message ? h('p', { class: `notice-${kind}` }, message) : null);
  if (message && kind === 'ok') {
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => fill(el), 6000);
  }
}

/** What an API error means to the person looking. */
export function errorText(error) {
  if (error?.code === 'permission_denied') return `Not allowed: ${error.message}`;
  if (error?.code === 'unauthenticated') return 'Your session has ended; sign in again.';
  return error?.message || String(error);
}

export function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, errorText(error));
}

/** Runs `work` for a form: disables its submit button, shows errors in `out`. */
export async function busy(form, out, work) {
  const button = form.querySelector('[type=submit]');
  if (button) button.disabled = true;
  if (out) fill(out);
  try {
    return await work();
  } catch (error) {
    if (out) fill(out, errorBox(error));
    else notice(errorText(error), 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/**
 * A copy-to-clipboard button for `text`. Without the Clipboard API (a page
 * served over plain HTTP to another host) it selects `source` and copies that.
 */
export function copyButton(text, label = 'Copy', source = null) {
  const button = h('button', { type: 'button', class: 'small' }, label);
  button.addEventListener('click', async () => {
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch {
      if (source) {
        source.focus();
        source.select();
        copied = document.execCommand('copy');
      }
    }
    button.textContent = copied ? 'Copied' : 'Selected: copy it by hand';
    setTimeout(() => {
      button.textContent = label;
    }, 2000);
  });
  return button;
}

/** A secret shown once: read-only text with a copy button (`long`: wraps). */
export function secret(label, text, testId, long = false) {
  const id = uid('secret');
  const attrs = { id, readonly: true, 'data-testid': testId, spellcheck: 'false' };
  const box = long ? h('textarea', { ...attrs, rows: 3 }, text) : h('input', { ...attrs, type: 'text', value: text });
  return h(
    'div',
    { class: 'field secret' },
    h('label', { for: id }, label),
    h(
      'div',
      { class: 'row' },
      box,
      copyButton(text, 'Copy', box),
    ),
  );
}

/**
 * A modal dialog (native <dialog>: focus stays inside, Esc closes it).
 * `build(close)` returns its body. Focus goes back to where it was.
 */
export function dialog(title, build) {
  const opener = document.activeElement;
  const titleId = uid('dialog-title');
  const el = h('dialog', { 'aria-labelledby': titleId });
  const close = () => el.close();
  el.addEventListener('close', () => {
    el.remove();
    if (opener && document.contains(opener)) opener.focus();
  });
  fill(
    el,
    h(
      'div',
      { class: 'dialog-head' },
      h('h2', { id: titleId }, title),
      h('button', { type: 'button', class: 'icon', 'aria-label': 'Close', onclick: close }, '×'),
    ),
    build(close),
  );
  document.body.append(el);
  el.showModal();
  const first = el.querySelector('input, select, textarea, button:not(.icon)');
  if (first) first.focus();
  close.element = el;
  return close;
}

/** Asks before something that cannot be undone; resolves true when confirmed. */
export function confirmAction(title, text, action = 'Delete') {
  return new Promise((resolve) => {
    let answered = false;
    const close = dialog(title, (done) => {
      const no = h('button', { type: 'button', onclick: done }, 'Cancel');
      const yes = h('button', {
        type: 'button',
        class: 'danger',
        onclick: () => {
          answered = true;
          done();
        },
      }, action);
      return h('div', {}, h('p', {}, text), h('div', { class: 'actions' }, no, yes));
    });
    close.element.addEventListener('close', () => resolve(answered));
  });
}

/** A section with a heading and optional actions beside it. */
export function section(title, actions, ...body) {
  const id = uid('section');
  return h(
    'section',
    { class: 'panel', 'aria-labelledby': id },
    h('div', { class: 'panel-head' }, h('h2', { id }, title), actions ? h('div', { class: 'actions' }, actions) : null),
    ...body,
  );
}

/** A table with a caption (visually hidden) and header row. */
export function table(caption, headers, rows) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, headers.map((label) => h('th', { scope: 'col' }, label)))),
      h('tbody', {}, rows),
    ),
  );
}

export function empty(text) {
  return h('p', { class: 'muted empty' }, text);
}

/**
 * Sets the document title; the heading takes the focus (so that screen
 * readers announce the new page) unless `focus` is false.
 */
export function pageTitle(text, focus = true) {
  document.title = `${text} · corral`;
  const heading = h('h1', { tabindex: '-1' }, text);
  if (focus) {
    queueMicrotask(() => {
      if (!document.querySelector('dialog[open]')) heading.focus({ preventScroll: true });
    });
  }
  return heading;
}
