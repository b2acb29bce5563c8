// The one way the app talks to /graphql, following the README's advice to
// SPAs: operations go by their persisted-query id (queries over GET, so
// the browser's HTTP cache honours Cache-Control; mutations over POST),
// falling back to the text when the service does not know the id yet
// (automatic persisted queries). Errors are branched on extensions.code:
// UNAUTHENTICATED ends the session, RATE_LIMITED waits Retry-After and
// tries again, UNAVAILABLE raises the retry banner.
import { createClient } from 'graphql-ws';
import operations from 'virtual:kairos-operations';
import { session } from './session.js';

const ENDPOINT = '/graphql';
const ACCEPT = 'application/graphql-response+json, application/json;q=0.9';
/** Longest wait for a RATE_LIMITED answer before giving up, in seconds. */
const MAX_RETRY_AFTER = 30;
const MAX_ATTEMPTS = 3;

/** Events the shell listens to: `unauthenticated`, `unavailable`, `rate-limited`, `recovered`. */
export const apiEvents = new EventTarget();

/** An error the service answered (or a network failure, code UNAVAILABLE). */
export class ApiError extends Error {
  constructor(message, { code = 'INTERNAL', status = 0, reason, retryAfter } = {}) {
    super(message);
    this.code = code;
    this.status = status;
    this.reason = reason;
    this.retryAfter = retryAfter;
  }

  /** The input field a BAD_USER_INPUT or CONFLICT names, if any ("`slug` must…"). */
  get field() {
    const named = this.message.match(/`(\w+)`/);
    if (named) return named[1];
    const word = this.message.match(/\b(slug|email|username|password)\b/);
    return word ? word[1] : undefined;
  }
}

/** Operations whose UNAUTHENTICATED answer is the form's own error, not an expired session. */
const SIGN_IN = new Set(['Login', 'Register']);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function send(op, name, variables, withText) {
  const headers = { accept: ACCEPT };
  const token = session.token();
  if (token) headers.authorization = `Bearer ${token}`;
  const extensions = { persistedQuery: { version: 1, sha256Hash: op.id } };
  if (op.type === 'query') {
    const params = new URLSearchParams({ operationName: name, extensions: JSON.stringify(extensions) });
    if (variables && Object.keys(variables).length) params.set('variables', JSON.stringify(variables));
    if (withText) params.set('query', op.body);
    return fetch(`${ENDPOINT}?${params}`, { method: 'GET', headers });
  }
  headers['content-type'] = 'application/json';
  const body = { operationName: name, variables: variables ?? {}, extensions };
  if (withText) body.query = op.body;
  return fetch(ENDPOINT, { method: 'POST', headers, body: JSON.stringify(body) });
}

async function readBody(res) {
  try {
    return await res.json();
  } catch {
    return {};
  }
}

function firstError(body, res) {
  const e = body?.errors?.[0];
  if (!e) return null;
  const retry = Number(res.headers.get('retry-after'));
  return new ApiError(e.message, {
    code: e.extensions?.code ?? 'INTERNAL',
    status: res.status,
    reason: e.extensions?.reason,
    retryAfter: Number.isFinite(retry) && retry > 0 ? retry : undefined,
  });
}

/** A random idempotency key (32 hex digits; no secure context needed). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Runs the operation `name` with `variables`; resolves to its `data` or
 * rejects with an ApiError. With `idempotent` (a mutation carrying an
 * idempotency key), a failure that may or may not have been applied
 * (UNAVAILABLE, no answer) is sent again, with backoff: the service
 * applies it once and answers the first result.
 */
export async function request(name, variables, { idempotent = false } = {}) {
  const op = operations[name];
  if (!op) throw new Error(`unknown operation ${name}`);
  let withText = false;
  for (let attempt = 1; ; attempt++) {
    let res;
    try {
      res = await send(op, name, variables, withText);
    } catch {
      if (idempotent && attempt < MAX_ATTEMPTS) {
        await sleep(500 * 2 ** attempt * (0.5 + Math.random() / 2));
        continue;
      }
      const err = new ApiError('The service cannot be reached.', { code: 'UNAVAILABLE' });
      apiEvents.dispatchEvent(new CustomEvent('unavailable', { detail: err }));
      throw err;
    }
    const body = await readBody(res);
    const error = firstError(body, res) ?? (res.ok ? null : new ApiError(`HTTP ${res.status}`, { status: res.status }));
    if (!error) {
      apiEvents.dispatchEvent(new Event('recovered'));
      return body.data;
    }
    if (error.reason === 'PERSISTED_QUERY_NOT_FOUND' && !withText) {
      withText = true; // automatic persisted queries: register the text once
      continue;
    }
    if (error.code === 'UNAVAILABLE' && idempotent && attempt < MAX_ATTEMPTS) {
      await sleep(500 * 2 ** attempt * (0.5 + Math.random() / 2));
      continue;
    }
    if (error.code === 'RATE_LIMITED' && attempt < MAX_ATTEMPTS) {
      const wait = Math.min(error.retryAfter ?? 1, MAX_RETRY_AFTER);
      apiEvents.dispatchEvent(new CustomEvent('rate-limited', { detail: wait }));
      await sleep(wait * 1000);
      continue;
    }
    if (error.code === 'UNAUTHENTICATED' && (res.status === 401 || !SIGN_IN.has(name))) {
      apiEvents.dispatchEvent(new CustomEvent('unauthenticated', { detail: error }));
    } else if (error.code === 'UNAVAILABLE') {
      apiEvents.dispatchEvent(new CustomEvent('unavailable', { detail: error }));
    } else if (body.data) {
      apiEvents.dispatchEvent(new Event('recovered'));
    }
    throw error;
  }
}

/**
 * Runs the subscription `name` over one shared WebSocket (graphql-ws,
 * graphql-transport-ws on /graphql, the token in connection_init).
 * `handlers`: `next(data)`; `connected()` after every (re)connection,
 * when the caller should refetch what it shows (delivery is at most once,
 * so events sent while the socket was down are lost); `disconnected()`
 * when the socket closes, and `error()` when it gives up. Returns a function
 * that stops the subscription; the socket closes with the last one.
 */
export function subscribe(name, variables, handlers) {
  const op = operations[name];
  if (!op) throw new Error(`unknown operation ${name}`);
  const client = socket();
  const offConnected = client.on('connected', () => handlers.connected?.());
  const offClosed = client.on('closed', () => handlers.disconnected?.());
  const stop = client.subscribe(
    { operationName: name, query: op.body, variables: variables ?? {} },
    {
      next: (result) => result.data && handlers.next(result.data),
      // Closed for good (signed out, refused): the caller's polling stays.
      error: () => handlers.error?.(),
      complete: () => {},
    },
  );
  return () => {
    offConnected();
    offClosed();
    stop();
  };
}

let client = null;
let clientToken = null;

/** The tab's graphql-ws client, made again when the token changes. */
function socket() {
  const token = session.token();
  if (client && clientToken === token) return client;
  client?.dispose();
  const url = new URL(ENDPOINT, window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  clientToken = token;
  client = createClient({
    url: url.href,
    lazy: true,
    // A function: a reconnection sends the token the tab holds then.
    connectionParams: () => {
      const t = session.token();
      return t ? { Authorization: `Bearer ${t}` } : {};
    },
    // Reconnect after restarts (1012) and network drops, not after a refusal.
    retryAttempts: Infinity,
    shouldRetry: (event) => !(event && [4401, 4403, 4429].includes(event.code)),
    retryWait: async (retries) => sleep(Math.min(1000 * 2 ** retries, 30_000) * (0.5 + Math.random() / 2)),
  });
  return client;
}
