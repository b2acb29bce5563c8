// Data hooks over api.js: one query, or a list paged with "load more".
// Both run again when the retry banner's button bumps the retry epoch.
import { createContext } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import { request } from './api.js';

/** A counter the retry banner increments: every mounted query runs again. */
export const RetryEpoch = createContext(0);

/** `{ data, error, loading, reload }` of the operation `name`. */
export function useQuery(name, variables, { skip = false } = {}) {
  const key = JSON.stringify(variables ?? {});
  const epoch = useContext(RetryEpoch);
  const [state, setState] = useState({ loading: !skip, data: undefined, error: null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (skip) return undefined;
    let live = true;
    setState((s) => ({ ...s, loading: true, error: null }));
    request(name, JSON.parse(key)).then(
      (data) => live && setState({ data, loading: false, error: null }),
      (error) => live && setState((s) => ({ data: s.data, loading: false, error })),
    );
    return () => {
      live = false;
    };
  }, [name, key, tick, epoch, skip]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/**
 * A connection read page by page: `pick(data)` returns the connection,
 * `items(connection)` its items. `loadMore` appends the next page.
 */
export function usePaged(name, variables, pick, { pageSize = 12, items = (c) => c.nodes } = {}) {
  const key = JSON.stringify(variables ?? {});
  const epoch = useContext(RetryEpoch);
  const [state, setState] = useState({ list: [], total: null, pageInfo: null, loading: true, error: null });
  const [tick, setTick] = useState(0);
  const generation = useRef(0);

  const fetchPage = useCallback(
    (after, append) => {
      const mine = generation.current;
      setState((s) => ({ ...s, loading: true, error: null }));
      request(name, { ...JSON.parse(key), first: pageSize, after }).then(
        (data) => {
          if (mine !== generation.current) return;
          const conn = pick(data);
          setState((s) => ({
            list: append ? [...s.list, ...items(conn)] : items(conn),
            total: conn.totalCount ?? null,
            pageInfo: conn.pageInfo,
            loading: false,
            error: null,
          }));
        },
        (error) => mine === generation.current && setState((s) => ({ ...s, loading: false, error })),
      );
    },
    // pick and items are stable in practice (module-level or inline pure functions)
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [name, key, pageSize],
  );

  useEffect(() => {
    generation.current += 1;
    fetchPage(null, false);
  }, [fetchPage, tick, epoch]);

  return {
    ...state,
    hasMore: Boolean(state.pageInfo?.hasNextPage),
    loadMore: () => fetchPage(state.pageInfo?.endCursor ?? null, true),
    reload: () => setTick((t) => t + 1),
  };
}
