// Kairos GraphiQL bootstrap. Served as a file from this origin (never
// inline) so the page's Content-Security-Policy can be script-src 'self'.
// React, ReactDOM and GraphiQL are the globals of the vendored UMD builds.
(function () {
  'use strict';

  var root = document.getElementById('graphiql');
  var endpoint = root.getAttribute('data-endpoint') || '/graphql';

  var defaultQuery = [
    '# Welcome to Kairos GraphiQL.',
    '#',
    '# Public queries need no token. To act as a user, run the `login`',
    '# mutation, then put its token in the Headers tab below:',
    '#',
    '#   { "Authorization": "Bearer <token>" }',
    '#',
    '# Headers are kept only for this page, never stored. Subscriptions',
    '# run over WebSocket, signed by the same headers.',
    '',
    '{',
    '  modules(first: 5) {',
    '    totalCount',
    '    edges {',
    '      node {',
    '        id',
    '        title',
    '      }',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');

  // Subscriptions go over WebSocket (graphql-transport-ws, the graphql-ws
  // client bundled in GraphiQL) on the same path; the headers typed in the
  // editor become the connection_init payload, so a bearer token there
  // signs the socket.
  var socketUrl = new URL(endpoint, window.location.href);
  socketUrl.protocol = socketUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  var live = GraphiQL.createFetcher({
    url: endpoint,
    subscriptionUrl: socketUrl.href,
    enableIncrementalDelivery: false,
  });

  // The document of this execution, parsed here: GraphiQL's own
  // `documentAST` follows the editor with a delay and may be the previous
  // text's when Run is pressed right after typing.
  function subscriptionAst(params) {
    var graphql = GraphiQL.GraphQL;
    var ast;
    try {
      ast = graphql.parse(params.query);
    } catch (_) {
      return null; // the server explains what is wrong with it
    }
    var op = graphql.getOperationAST(ast, params.operationName || undefined);
    return op && op.operation === 'subscription' ? ast : null;
  }

  // One POST per operation, as an SPA sends it. The headers typed in the
  // editor win over ours (Headers.set ignores case).
  async function fetcher(params, options) {
    var ast = subscriptionAst(params);
    if (ast) return live(params, Object.assign({}, options, { documentAST: ast }));
    var headers = new Headers({
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json, application/json',
    });
    var extra = (options && options.headers) || {};
    Object.keys(extra).forEach(function (name) {
      headers.set(name, String(extra[name]));
    });
    var response = await fetch(endpoint, {
      method: 'POST',
      headers: headers,
      body: JSON.stringify(params),
      credentials: 'omit',
    });
    var text = await response.text();
    try {
      return JSON.parse(text);
    } catch (_) {
      return { errors: [{ message: 'HTTP ' + response.status + ': ' + text }] };
    }
  }

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    }),
  );
})();
