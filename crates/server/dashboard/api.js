// The dashboard's only way to the server: the browser session (/auth/session)
// and the Connect API (JSON codec), unary calls and server streams.
// The CSRF token lives in memory only; the session cookie travels by itself.

let csrf = '';
let onSignedOut = () => {};

/** An error from the server: a Connect code (or an HTTP status) and its message. */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message || code);
    this.code = code;
    this.status = status;
  }
  get denied() {
    return this.code === 'permission_denied';
  }
}

/** Called when a call finds the session gone (unauthenticated). */
export function whenSignedOut(fn) {
  onSignedOut = fn;
}

async function sessionAnswer(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  if (!response.ok) {
    throw new ApiError(String(response.status), body.error || response.statusText, response.status);
  }
  csrf = body.csrfToken || '';
  return body;
}

/** The live session ({userId, orgId, name, email, role, readOnly, …}) or null. */
export async function currentSession() {
  const response = await fetch('/auth/session', { headers: { Accept: 'application/json' } });
  if (response.status === 401) {
    csrf = '';
    return null;
  }
  return sessionAnswer(response);
}

/** Signs in with a personal access token; returns the session. */
export async function signIn(token) {
  const response = await fetch('/auth/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ token }),
  });
  return sessionAnswer(response);
}

/** Revokes the session; the cookie is cleared by the answer. */
export async function signOut() {
  const response = await fetch('/auth/session', { method: 'DELETE', headers: { 'X-CSRF-Token': csrf } });
  csrf = '';
  if (!response.ok && response.status !== 401) {
    throw new ApiError(String(response.status), 'signing out failed', response.status);
  }
}

function headers(contentType) {
  return { 'Content-Type': contentType, 'Connect-Protocol-Version': '1', 'X-CSRF-Token': csrf };
}

async function connectError(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  return new ApiError(body.code || String(response.status), body.message || response.statusText, response.status);
}

/** One unary call: `call('RunnerService', 'ListRunners', {...})`. */
export async function call(service, method, request = {}) {
  let response;
  try {
    response = await fetch(`/gitpod.v1.${service}/${method}`, {
      method: 'POST',
      headers: headers('application/json'),
      body: JSON.stringify(request),
    });
  } catch (e) {
    throw new ApiError('unavailable', `the server cannot be reached (${e.message})`);
  }
  if (!response.ok) {
    const error = await connectError(response);
    if (error.code === 'unauthenticated') onSignedOut();
    throw error;
  }
  return response.json();
}

/** Every page of a list call, concatenated (`field` names the repeated field). */
export async function listAll(service, method, request, field, limit = 2000) {
  const items = [];
  let token = '';
  do {
    const page = await call(service, method, { ...request, pagination: { token, pageSize: 100 } });
    items.push(...(page[field] || []));
    token = page.pagination?.nextToken || '';
  } while (token && items.length < limit);
  return items;
}

function envelope(message) {
  const json = new TextEncoder().encode(JSON.stringify(message));
  const frame = new Uint8Array(5 + json.length);
  new DataView(frame.buffer).setUint32(1, json.length);
  frame.set(json, 5);
  return frame;
}

/**
 * A server stream (Connect streaming protocol, `application/connect+json`):
 * calls `onOpen` once the server has answered, then `onMessage` with each
 * message until the stream ends or `signal` aborts. Resolves when the stream
 * ends cleanly, rejects with an ApiError.
 */
export async function stream(service, method, request, onMessage, signal, onOpen = () => {}) {
  const response = await fetch(`/gitpod.v1.${service}/${method}`, {
    method: 'POST',
    headers: headers('application/connect+json'),
    body: envelope(request),
    signal,
  });
  if (!response.ok) {
    const error = await connectError(response);
    if (error.code === 'unauthenticated') onSignedOut();
    throw error;
  }
  onOpen();
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = new Uint8Array(0);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new ApiError('unavailable', 'the event stream ended');
    const joined = new Uint8Array(buffered.length + value.length);
    joined.set(buffered);
    joined.set(value, buffered.length);
    buffered = joined;
    while (buffered.length >= 5) {
      const view = new DataView(buffered.buffer, buffered.byteOffset);
      const flags = view.getUint8(0);
      const length = view.getUint32(1);
      if (buffered.length < 5 + length) break;
      const body = JSON.parse(decoder.decode(buffered.subarray(5, 5 + length)) || '{}');
      buffered = buffered.slice(5 + length);
      if (flags & 0x02) {
        if (body.error) {
          if (body.error.code === 'unauthenticated') onSignedOut();
          throw new ApiError(body.error.code, body.error.message);
        }
        return;
      }
      onMessage(body);
    }
  }
}
