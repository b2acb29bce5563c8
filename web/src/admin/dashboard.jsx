// Admin screens that only read: dashboard, users, notification jobs, and
// the cache with its one action.
import { useEffect, useState } from 'preact/hooks';
import { request } from '../api.js';
import { usePaged, useQuery } from '../hooks.js';
import { BarChart, Empty, ErrorNote, Field, Loading, PageTitle, Stat, fmt } from '../ui.jsx';

export function Dashboard() {
  const q = useQuery('AdminDashboard');
  const d = q.data?.adminDashboard;
  return (
    <section>
      <PageTitle>Dashboard</PageTitle>
      <ErrorNote error={q.error} onRetry={q.reload} />
      {q.loading && !d && <Loading what="Loading the dashboard" />}
      {d && (
        <>
          <dl class="stats">
            <Stat label="Users" value={d.usersTotal} />
            <Stat label="Active, last 7 days" value={d.activeUsersLast7Days} />
            <Stat label="Modules published" value={`${d.modulesPublished} of ${d.modulesTotal}`} />
            <Stat label="Completions" value={d.completionsTotal} />
            <Stat label="Average score" value={fmt.score(d.averageScore)} />
          </dl>
          {d.topModules.length === 0 ? (
            <Empty>No learner has started a module yet.</Empty>
          ) : (
            <div class="charts">
              <BarChart title="Top modules by learners started" data={d.topModules.map((m) => ({ label: m.module.title, value: m.learnersStarted }))} />
              <BarChart
                title="Completion rate of the top modules"
                data={d.topModules.map((m) => ({ label: m.module.title, value: m.completionRate }))}
                max={1}
                format={fmt.percent}
              />
              <BarChart
                title="Active users"
                data={[
                  { label: 'Active, 7 days', value: d.activeUsersLast7Days },
                  { label: 'All users', value: d.usersTotal },
                ]}
              />
            </div>
          )}
        </>
      )}
    </section>
  );
}

const pickUsers = (d) => d.users;

export function Users() {
  const [search, setSearch] = useState('');
  const [term, setTerm] = useState('');
  useEffect(() => {
    const t = setTimeout(() => setTerm(search.trim()), 300);
    return () => clearTimeout(t);
  }, [search]);
  const list = usePaged('Users', term ? { search: term } : {}, pickUsers, { pageSize: 20 });
  return (
    <section>
      <PageTitle>Users</PageTitle>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <Field id="users-search" label="Search by email or username prefix">
          {(a) => <input {...a} type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />}
        </Field>
      </form>
      {list.total != null && <p class="count">{list.total} users</p>}
      <ErrorNote error={list.error} onRetry={list.reload} />
      {!list.loading && !list.error && list.list.length === 0 && <Empty>No user matches.</Empty>}
      {list.list.length > 0 && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Username</th>
                <th scope="col">Email</th>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Joined</th>
              </tr>
            </thead>
            <tbody>
              {list.list.map((u) => (
                <tr key={u.id}>
                  <td>{u.username}</td>
                  <td>{u.email}</td>
                  <td>{u.displayName ?? '—'}</td>
                  <td>{fmt.level(u.role)}</td>
                  <td>{fmt.date(u.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {list.loading && <Loading what="Loading users" />}
      {list.hasMore && !list.loading && (
        <button type="button" class="load-more" onClick={list.loadMore}>
          Load more
        </button>
      )}
    </section>
  );
}

const pickJobs = (d) => d.notificationJobs;
const jobItems = (c) => c.edges.map((e) => e.node);

export function Jobs() {
  const list = usePaged('NotificationJobs', {}, pickJobs, { pageSize: 20, items: jobItems });
  const active = list.list.some((j) => j.state === 'QUEUED' || j.state === 'RUNNING');
  const { reload } = list;
  // While a fan-out runs, its progress is read again every two seconds.
  useEffect(() => {
    if (!active) return undefined;
    const t = setInterval(reload, 2000);
    return () => clearInterval(t);
  }, [active]);
  return (
    <section>
      <PageTitle>Notification jobs</PageTitle>
      <p>Publishing a module queues a job; a background worker notifies every learner.</p>
      <ErrorNote error={list.error} onRetry={list.reload} />
      {!list.loading && !list.error && list.list.length === 0 && <Empty>No job yet: publish a module to start one.</Empty>}
      <ul class="jobs">
        {list.list.map((j) => (
          <li key={j.id} class="card">
            <p>
              <span class={`badge ${j.state.toLowerCase()}`}>{j.state}</span> {j.message}
            </p>
            <label class="progress-label">
              {j.notified} of {j.total ?? '?'} learners notified
              <progress max={j.total ?? 1} value={j.total == null ? undefined : j.notified} />
            </label>
            <p class="meta">
              Queued {fmt.date(j.createdAt)} · attempts {j.attempts}
              {j.finishedAt && ` · finished ${fmt.date(j.finishedAt)}`}
              {j.lastError && ` · last error: ${j.lastError}`}
            </p>
          </li>
        ))}
      </ul>
      {list.loading && list.list.length === 0 && <Loading what="Loading jobs" />}
      {list.hasMore && (
        <button type="button" class="load-more" onClick={list.loadMore}>
          Load more
        </button>
      )}
    </section>
  );
}

export function CacheAdmin() {
  const q = useQuery('CacheStats');
  const [prefix, setPrefix] = useState('');
  const [result, setResult] = useState('');
  const [error, setError] = useState(null);
  const c = q.data?.cacheStats;
  async function clear(e) {
    e.preventDefault();
    setError(null);
    try {
      const data = await request('ClearCache', { prefix: prefix.trim() || null });
      setResult(`${data.clearCache} cached entries dropped.`);
      q.reload();
    } catch (err) {
      setError(err);
    }
  }
  return (
    <section>
      <PageTitle>Cache</PageTitle>
      <ErrorNote error={q.error} onRetry={q.reload} />
      {q.loading && !c && <Loading what="Loading cache statistics" />}
      {c && (
        <dl class="stats">
          <Stat label="Backend" value={c.backend} />
          <Stat label="Redis" value={c.redisConfigured ? (c.redisAvailable ? 'up' : 'down') : 'not configured'} />
          <Stat label="Breaker" value={c.breaker} />
          <Stat label="Hit rate" value={fmt.percent(c.hitRate)} />
          <Stat label="Hits / misses" value={`${c.hits} / ${c.misses}`} />
          <Stat label="Memory entries" value={c.memoryEntries} />
          <Stat label="Redis errors" value={c.errors} />
        </dl>
      )}
      <form onSubmit={clear} class="inline-form">
        <Field id="cache-prefix" label="Key prefix (empty clears everything)" error={error?.message}>
          {(a) => <input {...a} value={prefix} onInput={(e) => setPrefix(e.currentTarget.value)} />}
        </Field>
        <button type="submit" class="danger">
          Clear cache
        </button>
      </form>
      <p role="status">{result}</p>
      <button type="button" onClick={q.reload}>
        Refresh
      </button>
    </section>
  );
}
