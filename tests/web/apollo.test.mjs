// Apollo Client drives Kairos the way a single-page app does: its HttpLink
// on node's global fetch, its default Accept header, the `__typename` its
// InMemoryCache adds to every selection, the normalised cache, a bearer
// token added by Apollo's documented auth link (which sends a blank
// `authorization` header while signed out), a second client that sends
// queries over GET (`useGETForQueries`), and automatic persisted queries
// through Apollo's PersistedQueryLink, over POST and over GET; and
// subscriptions through Apollo's GraphQLWsLink (graphql-ws) over WebSocket.
//
// Run by tests/api/web.rs with KAIROS_URL (the service), KAIROS_LIVE_URL
// (a second instance on the same database and Redis, where subscriptions
// go) and KAIROS_MODULES (the seeded published modules by position: id,
// slug, title, content).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import {
  ApolloClient,
  ApolloLink,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
  ServerError,
  gql,
} from '@apollo/client';
import { SetContextLink } from '@apollo/client/link/context';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const base = process.env.KAIROS_URL;
const liveBase = process.env.KAIROS_LIVE_URL ?? base;
const seeded = JSON.parse(process.env.KAIROS_MODULES ?? '[]');

const REGISTER = gql`
  mutation Register($input: RegisterInput!) {
    register(input: $input) {
      token
      expiresAt
      user {
        id
        username
        role
      }
    }
  }
`;

const LOGIN = gql`
  mutation Login($input: LoginInput!) {
    login(input: $input) {
      token
      user {
        id
        username
      }
    }
  }
`;

const CATALOGUE = gql`
  query Catalogue($first: Int, $after: String) {
    modules(first: $first, after: $after) {
      totalCount
      edges {
        cursor
        node {
          id
          slug
          title
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`;

const MODULE = gql`
  query Module($id: ID!) {
    module(id: $id) {
      id
      title
      content
      myProgress {
        status
        attempts
        timeSpentSeconds
        score
      }
    }
  }
`;

const RECORD = gql`
  mutation Record($input: ProgressInput!) {
    recordProgress(input: $input) {
      status
      score
      timeSpentSeconds
      attempts
      completedAt
      module {
        id
        title
      }
    }
  }
`;

const STATS = gql`
  query Stats {
    me {
      id
      username
    }
    progressStats {
      modulesTotal
      modulesStarted
      modulesInProgress
      modulesCompleted
      completionRate
      totalTimeSeconds
      averageScore
      lastActivityAt
    }
    myProgress(first: 10) {
      totalCount
      nodes {
        status
        attempts
        timeSpentSeconds
        score
        module {
          id
        }
      }
    }
  }
`;

/// A fetch that notes what each request carried and what came back, then
/// hands the response on.
function recordingFetch(sent) {
  return async (input, init = {}) => {
    const headers = new Headers(init.headers);
    const url = new URL(typeof input === 'string' ? input : input.url);
    const request = {
      method: init.method ?? 'GET',
      url,
      accept: headers.get('accept'),
      contentType: headers.get('content-type'),
      authorization: headers.get('authorization'),
      body: typeof init.body === 'string' ? JSON.parse(init.body) : null,
    };
    sent.push(request);
    const response = await fetch(input, init);
    request.status = response.status;
    request.reply = await response
      .clone()
      .json()
      .catch(() => null);
    return response;
  };
}

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/// An SPA's client. The token is added by Apollo's documented auth link,
/// which sends a blank `authorization` header when there is none; with
/// `persisted`, Apollo's PersistedQueryLink (given those options) sends
/// hashes first.
function spaClient({ token = () => null, useGETForQueries = false, persisted = null } = {}) {
  const sent = [];
  const auth = new SetContextLink(({ headers }) => {
    const t = token();
    return { headers: { ...headers, authorization: t ? `Bearer ${t}` : '' } };
  });
  const http = new HttpLink({
    uri: `${base}/graphql`,
    fetch: recordingFetch(sent),
    useGETForQueries,
  });
  const links = persisted
    ? [auth, new PersistedQueryLink({ sha256, ...persisted }), http]
    : [auth, http];
  const client = new ApolloClient({
    link: ApolloLink.from(links),
    cache: new InMemoryCache(),
  });
  return { client, sent };
}

/// The GraphQL query a recorded request carried, by POST body or GET URL.
const queryOf = (request) => request.body?.query ?? request.url.searchParams.get('query');

test('Apollo Client drives register, login, the catalogue and progress', async (t) => {
  assert.ok(base, 'KAIROS_URL is set');
  assert.equal(seeded.length, 3, 'three published modules were seeded');
  let token = null;
  const { client, sent } = spaClient({ token: () => token });
  let userId;

  await t.test('register and login give a token, with Apollo defaults on the wire', async () => {
    const registered = await client.mutate({
      mutation: REGISTER,
      variables: {
        input: {
          email: 'Apollo.Learner@example.org',
          username: 'apollo_learner',
          password: 'correct horse battery staple',
        },
      },
    });
    const login = await client.mutate({
      mutation: LOGIN,
      variables: {
        input: { login: 'APOLLO.LEARNER@example.org', password: 'correct horse battery staple' },
      },
    });

    const user = registered.data.register.user;
    assert.equal(user.__typename, 'User');
    assert.equal(user.username, 'apollo_learner');
    assert.equal(user.role, 'LEARNER');
    assert.ok(Date.parse(registered.data.register.expiresAt) > Date.now());
    assert.equal(login.data.login.user.id, user.id);
    assert.ok(login.data.login.token);
    token = login.data.login.token;
    userId = user.id;
    for (const request of sent) {
      assert.equal(request.method, 'POST');
      assert.equal(request.accept, 'application/graphql-response+json,application/json;q=0.9');
      assert.equal(request.contentType, 'application/json');
      assert.equal(request.authorization, '', 'a blank header before login: anonymous');
      assert.match(queryOf(request), /__typename/, 'Apollo added __typename');
    }
  });

  await t.test('the catalogue pages through the published modules; a repeat comes from the cache', async () => {
    const first = await client.query({ query: CATALOGUE, variables: { first: 2 } });
    const page = first.data.modules;
    const second = await client.query({
      query: CATALOGUE,
      variables: { first: 2, after: page.pageInfo.endCursor },
    });
    const before = sent.length;
    const again = await client.query({ query: CATALOGUE, variables: { first: 2 } });

    assert.equal(page.__typename, 'ModuleConnection');
    assert.equal(page.totalCount, 3);
    assert.equal(page.pageInfo.hasNextPage, true);
    assert.deepEqual(
      page.edges.map((e) => [e.node.__typename, e.node.id, e.node.title]),
      seeded.slice(0, 2).map((m) => ['Module', m.id, m.title]),
    );
    assert.deepEqual(
      second.data.modules.edges.map((e) => e.node.slug),
      [seeded[2].slug],
    );
    assert.equal(second.data.modules.pageInfo.hasNextPage, false);
    assert.equal(sent.length, before, 'the repeated page was answered by the cache');
    assert.deepEqual(again.data, first.data);
    const cached = client.cache.readFragment({
      id: client.cache.identify({ __typename: 'Module', id: seeded[0].id }),
      fragment: gql`
        fragment CachedTitle on Module {
          title
        }
      `,
    });
    assert.equal(cached.title, seeded[0].title, 'modules are normalised by __typename and id');
  });

  await t.test('a module by id comes with its content; an unknown one is NOT_FOUND', async () => {
    const { data } = await client.query({ query: MODULE, variables: { id: seeded[1].id } });
    const unknown = await client
      .query({ query: MODULE, variables: { id: '0123456789abcdef01234567' } })
      .then(
        () => assert.fail('an unknown module is an error'),
        (error) => error,
      );

    assert.equal(data.module.title, seeded[1].title);
    assert.equal(data.module.content, seeded[1].content);
    assert.equal(data.module.myProgress, null);
    assert.ok(CombinedGraphQLErrors.is(unknown), String(unknown));
    assert.equal(unknown.errors[0].extensions.code, 'NOT_FOUND');
    assert.equal(sent.at(-1).authorization, `Bearer ${token}`);
  });

  await t.test('recorded progress shows in progressStats, myProgress and the module', async () => {
    const [a, b] = seeded;
    const record = (input) => client.mutate({ mutation: RECORD, variables: { input } });
    await record({ moduleId: a.id, timeSpentSeconds: 120, score: 80 });
    const done = await record({ moduleId: a.id, timeSpentSeconds: 60, score: 70, completed: true });
    await record({ moduleId: b.id, timeSpentSeconds: 30 });
    const { data } = await client.query({ query: STATS, fetchPolicy: 'network-only' });
    const module = await client.query({
      query: MODULE,
      variables: { id: a.id },
      fetchPolicy: 'network-only',
    });

    const progress = done.data.recordProgress;
    assert.equal(progress.__typename, 'Progress');
    assert.equal(progress.status, 'COMPLETED');
    assert.equal(progress.attempts, 2);
    assert.equal(progress.timeSpentSeconds, 180);
    assert.equal(progress.score, 80, 'the best score is kept');
    assert.ok(progress.completedAt);
    assert.equal(progress.module.title, a.title);
    assert.equal(data.me.id, userId);
    const stats = data.progressStats;
    assert.equal(stats.__typename, 'ProgressStats');
    assert.equal(stats.modulesTotal, 3);
    assert.equal(stats.modulesStarted, 2);
    assert.equal(stats.modulesInProgress, 1);
    assert.equal(stats.modulesCompleted, 1);
    assert.ok(Math.abs(stats.completionRate - 1 / 3) < 1e-9, String(stats.completionRate));
    assert.equal(stats.totalTimeSeconds, 210);
    assert.equal(stats.averageScore, 80);
    assert.ok(stats.lastActivityAt);
    assert.equal(data.myProgress.totalCount, 2);
    assert.deepEqual(
      data.myProgress.nodes.map((p) => [p.module.id, p.status, p.attempts, p.timeSpentSeconds]),
      [
        [b.id, 'IN_PROGRESS', 1, 30],
        [a.id, 'COMPLETED', 2, 180],
      ],
      'most recently updated first',
    );
    assert.equal(module.data.module.myProgress.status, 'COMPLETED');
  });

  await t.test('a client with useGETForQueries sends queries over GET and mutations over POST', async () => {
    const { client: getClient, sent: getSent } = spaClient({
      token: () => token,
      useGETForQueries: true,
    });
    const catalogue = await getClient.query({ query: CATALOGUE, variables: { first: 3 } });
    const before = await getClient.query({ query: STATS });
    await getClient.mutate({
      mutation: RECORD,
      variables: { input: { moduleId: seeded[2].id, timeSpentSeconds: 45, score: 90 } },
    });
    const after = await getClient.query({ query: STATS, fetchPolicy: 'network-only' });

    assert.deepEqual(
      getSent.map((r) => r.method),
      ['GET', 'GET', 'POST', 'GET'],
    );
    const [get] = getSent;
    assert.match(get.url.searchParams.get('query'), /__typename/);
    assert.deepEqual(JSON.parse(get.url.searchParams.get('variables')), { first: 3 });
    assert.equal(get.url.searchParams.get('operationName'), 'Catalogue');
    assert.equal(get.accept, 'application/graphql-response+json,application/json;q=0.9');
    assert.ok(getSent.every((r) => r.authorization === `Bearer ${token}`));
    assert.deepEqual(
      catalogue.data.modules.edges.map((e) => e.node.title),
      seeded.map((m) => m.title),
    );
    assert.equal(before.data.progressStats.totalTimeSeconds, 210);
    assert.equal(after.data.progressStats.totalTimeSeconds, 255);
    assert.equal(after.data.progressStats.modulesInProgress, 2);
    assert.equal(after.data.progressStats.averageScore, 85);
  });

  await t.test('a forged token is refused as UNAUTHENTICATED', async () => {
    const { client: forged } = spaClient({ token: () => `${token}x` });
    const error = await forged.query({ query: CATALOGUE, variables: { first: 1 } }).then(
      () => assert.fail('a forged token is an error'),
      (e) => e,
    );

    // A 401 with a JSON body: Apollo reports a ServerError with the status
    // and the body, from which an SPA reads the code (and signs in again).
    assert.ok(ServerError.is(error), String(error));
    assert.equal(error.statusCode, 401);
    assert.equal(JSON.parse(error.bodyText).errors[0].extensions.code, 'UNAUTHENTICATED');
  });
});

// Documents of their own, so the server has never seen their hashes.
const PQ_CATALOGUE = gql`
  query PersistedCatalogue($first: Int) {
    modules(first: $first) {
      totalCount
      nodes {
        id
        title
      }
    }
  }
`;

const PQ_REGISTER = gql`
  mutation PersistedRegister($input: RegisterInput!) {
    register(input: $input) {
      token
      user {
        id
      }
    }
  }
`;

const PQ_STATS = gql`
  query PersistedStats {
    progressStats {
      modulesStarted
      totalTimeSeconds
    }
  }
`;

const PQ_RECORD = gql`
  mutation PersistedRecord($input: ProgressInput!) {
    recordProgress(input: $input) {
      timeSpentSeconds
    }
  }
`;

/// The persisted-query hash a recorded request carried (POST body or GET
/// `extensions` parameter).
function hashOf(request) {
  const extensions = request.body?.extensions ?? JSON.parse(request.url.searchParams.get('extensions'));
  assert.equal(extensions.persistedQuery.version, 1);
  return extensions.persistedQuery.sha256Hash;
}

/// Asserts a recorded request carried a hash and no query text.
function assertHashOnly(request) {
  assert.ok(!('query' in (request.body ?? {})), 'no query in the body');
  assert.equal(request.url.searchParams.has('query'), false, 'no query in the URL');
  assert.match(hashOf(request), /^[0-9a-f]{64}$/);
}

/// Asserts a recorded reply was the APQ protocol's "send me the text".
function assertNotFound(request) {
  assert.equal(request.status, 200);
  const [error] = request.reply.errors;
  assert.equal(error.message, 'PersistedQueryNotFound');
  assert.equal(error.extensions.code, 'NOT_FOUND');
  assert.equal(error.extensions.reason, 'PERSISTED_QUERY_NOT_FOUND');
}

test("Apollo's PersistedQueryLink registers a query once; another client then sends only its hash", async () => {
  const first = spaClient({ persisted: {} });
  const second = spaClient({ persisted: {} });

  const registered = await first.client.query({ query: PQ_CATALOGUE, variables: { first: 3 } });
  const byHash = await second.client.query({ query: PQ_CATALOGUE, variables: { first: 3 } });

  const [hashOnly, withText] = first.sent;
  assert.equal(first.sent.length, 2, 'the hash, then the hash with the text');
  assert.ok(first.sent.every((r) => r.method === 'POST' && r.authorization === ''));
  assertHashOnly(hashOnly);
  assertNotFound(hashOnly);
  assert.equal(hashOf(withText), hashOf(hashOnly));
  assert.equal(sha256(withText.body.query), hashOf(hashOnly), 'the hash is the SHA-256 of the text sent');
  assert.equal(withText.status, 200);
  assert.equal(registered.data.modules.totalCount, 3);
  assert.deepEqual(
    registered.data.modules.nodes.map((m) => m.title),
    seeded.map((m) => m.title),
  );
  assert.equal(second.sent.length, 1, 'the second client needed no retry');
  const [only] = second.sent;
  assert.equal(only.method, 'POST');
  assertHashOnly(only);
  assert.equal(hashOf(only), hashOf(hashOnly));
  assert.equal(only.status, 200);
  assert.deepEqual(byHash.data, registered.data);
});

test('with useGETForHashedQueries, hashed queries go over GET and mutations over POST', async () => {
  let token = null;
  const options = { token: () => token, persisted: { useGETForHashedQueries: true } };
  const { client, sent } = spaClient(options);

  const registered = await client.mutate({
    mutation: PQ_REGISTER,
    variables: {
      input: {
        email: 'apq.learner@example.org',
        username: 'apq_learner',
        password: 'correct horse battery staple',
      },
    },
  });
  token = registered.data.register.token;
  const before = await client.query({ query: PQ_STATS });
  await client.mutate({
    mutation: PQ_RECORD,
    variables: { input: { moduleId: seeded[0].id, timeSpentSeconds: 75 } },
  });
  const fresh = spaClient(options);
  const after = await fresh.client.query({ query: PQ_STATS });

  assert.deepEqual(
    sent.map((r) => r.method),
    ['POST', 'POST', 'GET', 'POST', 'POST', 'POST'],
    'a mutation is never sent over GET; a query whose hash is unknown is retried with its text over POST',
  );
  const [register, , statsByHash, statsWithText, record] = sent;
  assertHashOnly(register);
  assertNotFound(register);
  assertHashOnly(record);
  assertNotFound(record);
  assertHashOnly(statsByHash);
  assertNotFound(statsByHash);
  assert.equal(statsByHash.authorization, `Bearer ${token}`);
  assert.match(statsWithText.body.query, /PersistedStats/);
  assert.equal(before.data.progressStats.modulesStarted, 0);
  assert.deepEqual(
    fresh.sent.map((r) => r.method),
    ['GET'],
    'a registered query runs by hash over GET',
  );
  const [get] = fresh.sent;
  assertHashOnly(get);
  assert.equal(hashOf(get), hashOf(statsByHash));
  assert.equal(get.url.searchParams.get('operationName'), 'PersistedStats');
  assert.equal(get.authorization, `Bearer ${token}`);
  assert.equal(get.status, 200);
  assert.equal(after.data.progressStats.modulesStarted, 1);
  assert.equal(after.data.progressStats.totalTimeSeconds, 75);
});

const PROGRESS_CHANGED = gql`
  subscription ProgressChanged {
    progressChanged {
      status
      timeSpentSeconds
      module {
        id
        title
      }
    }
  }
`;

/// A client whose subscriptions go over Apollo's GraphQLWsLink (the
/// `graphql-ws` client, `graphql-transport-ws` protocol) on the service's
/// `/graphql` upgrade, with the token in `connection_init`; its
/// queries and mutations over HTTP, split as Apollo's docs show.
function liveClient(token, closes = []) {
  const url = new URL('/graphql', liveBase);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = createClient({
    url: url.href,
    webSocketImpl: WebSocket,
    connectionParams: () => ({ Authorization: `Bearer ${token}` }),
    retryAttempts: 0,
    on: { closed: (event) => closes.push(event.code) },
  });
  const http = new HttpLink({
    uri: `${liveBase}/graphql`,
    headers: { authorization: `Bearer ${token}` },
  });
  const link = ApolloLink.split(
    ({ query }) => {
      const op = getMainDefinition(query);
      return op.kind === 'OperationDefinition' && op.operation === 'subscription';
    },
    new GraphQLWsLink(ws),
    http,
  );
  return { client: new ApolloClient({ link, cache: new InMemoryCache() }), ws };
}

/// Registers a learner through plain fetch; returns its token.
async function register(username) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      query: 'mutation($i: RegisterInput!) { register(input: $i) { token } }',
      variables: {
        i: { email: `${username}@example.org`, username, password: 'correct horse battery staple' },
      },
    }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body));
  return body.data.register.token;
}

/// Waits until the service runs `n` subscriptions (its metrics gauge).
async function activeSubscriptions(n) {
  for (let i = 0; i < 300; i++) {
    const text = await (await fetch(`${liveBase}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('kairos_ws_subscriptions '));
    if (line && Number(line.split(' ')[1]) >= n) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`the service never ran ${n} subscription(s)`);
}

test("Apollo's GraphQLWsLink on one instance receives progress recorded through another", async (t) => {
  const token = await register('apollo_live');
  const { client, ws } = liveClient(token);
  t.after(() => ws.dispose());

  // The subscription is live once the server runs it: its gauge says so.
  const events = [];
  const first = new Promise((resolve, reject) => {
    const sub = client.subscribe({ query: PROGRESS_CHANGED }).subscribe({
      next: (result) => {
        events.push(result);
        resolve();
      },
      error: reject,
    });
    t.after(() => sub.unsubscribe());
  });
  await activeSubscriptions(1);

  // "Another device": a second client over HTTP, to the other instance.
  const other = spaClient({ token: () => token }).client;
  await other.mutate({
    mutation: RECORD,
    variables: { input: { moduleId: seeded[0].id, timeSpentSeconds: 42 } },
  });
  await Promise.race([
    first,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no event within 15 s')), 15_000)),
  ]);
  const [event] = events;
  assert.equal(event.error, undefined, JSON.stringify(event));
  assert.equal(event.data.progressChanged.timeSpentSeconds, 42);
  assert.equal(event.data.progressChanged.module.id, seeded[0].id);
  assert.equal(event.data.progressChanged.module.title, seeded[0].title);
  assert.equal(event.data.progressChanged.module.__typename, 'Module', 'Apollo added __typename');
});

test('a bad token in connection_init closes the socket with 4403, which Apollo reports', async (t) => {
  const closes = [];
  const { client, ws } = liveClient('not-a-token', closes);
  t.after(() => ws.dispose());
  // Apollo Client 4 reports a failed subscription as a result with `error`.
  const error = await new Promise((resolve) => {
    client.subscribe({ query: PROGRESS_CHANGED }).subscribe({
      next: (result) => resolve(result.error ?? null),
      error: resolve,
    });
  });
  assert.ok(error, 'the subscription failed');
  assert.match(String(error.message ?? error), /4403/);
  assert.deepEqual(closes, [4403]);
});
