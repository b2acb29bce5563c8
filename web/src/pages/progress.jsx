// "My progress": the statistics of progressStats, a chart per category,
// activity over time and the history. Activity over time is derived here
// from the newest 100 history entries: the running schema has no
// activitySeries yet (the contract's), and a chart of the last 14 days
// needs no more.
import { useQuery, usePaged } from '../hooks.js';
import { BarChart, ColumnChart, Empty, ErrorNote, Loading, PageTitle, Stat, fmt } from '../ui.jsx';

const DAYS = 14;
const pickHistory = (d) => d.history;
const KIND = { STARTED: 'Started', PROGRESSED: 'Progress', COMPLETED: 'Completed' };

/** Minutes per UTC day over the last DAYS days, oldest first. */
export function activityByDay(entries, now = new Date()) {
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const days = Array.from({ length: DAYS }, (_, i) => {
    const t = today - (DAYS - 1 - i) * 86_400_000;
    return { t, label: fmt.day(new Date(t).toISOString()), value: 0 };
  });
  for (const e of entries) {
    const at = new Date(e.at);
    const t = Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate());
    const day = days.find((d) => d.t === t);
    if (day) day.value += e.timeSpentSeconds / 60;
  }
  return days;
}

export function MyProgress() {
  const stats = useQuery('MyStats');
  const recent = useQuery('RecentActivity', { first: 100 });
  const history = usePaged('History', {}, pickHistory, { pageSize: 10 });
  const s = stats.data?.progressStats;

  return (
    <section>
      <PageTitle>My progress</PageTitle>
      <ErrorNote error={stats.error} onRetry={stats.reload} />
      {stats.loading && !s && <Loading what="Loading your statistics" />}
      {s && (
        <>
          <dl class="stats" aria-label="Statistics">
            <Stat testid="stat-completion" label="Completion rate" value={fmt.percent(s.completionRate)} />
            <Stat testid="stat-completed" label="Modules completed" value={`${s.modulesCompleted} of ${s.modulesTotal}`} />
            <Stat testid="stat-in-progress" label="In progress" value={s.modulesInProgress} />
            <Stat testid="stat-time" label="Time spent" value={fmt.duration(s.totalTimeSeconds)} />
            <Stat testid="stat-score" label="Average score" value={fmt.score(s.averageScore)} />
            <Stat testid="stat-streak" label="Current streak" value={s.currentStreakDays === 1 ? '1 day' : `${s.currentStreakDays} days`} />
          </dl>
          <div class="charts">
            {s.byCategory.length > 0 ? (
              <BarChart
                title="Completed modules per category"
                data={s.byCategory.map((c) => ({ label: c.category, value: c.modulesTotal ? c.modulesCompleted / c.modulesTotal : 0 }))}
                max={1}
                format={fmt.percent}
              />
            ) : (
              <Empty>No category yet.</Empty>
            )}
            {recent.data && (
              <ColumnChart title={`Minutes of activity, last ${DAYS} days`} data={activityByDay(recent.data.history.nodes)} format={(v) => `${Math.round(v)} min`} />
            )}
          </div>
        </>
      )}
      <h2>History</h2>
      <ErrorNote error={history.error} onRetry={history.reload} />
      {!history.loading && !history.error && history.list.length === 0 && (
        <Empty>
          Nothing yet: open a module in the <a href="#/catalogue">catalogue</a> and start it.
        </Empty>
      )}
      {history.list.length > 0 && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Your activity, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Module</th>
                <th scope="col">What</th>
                <th scope="col">Time</th>
                <th scope="col">Score</th>
              </tr>
            </thead>
            <tbody>
              {history.list.map((e) => (
                <tr key={e.id}>
                  <td>{fmt.date(e.at)}</td>
                  <td>
                    <a href={`#/modules/${encodeURIComponent(e.module.slug)}`}>{e.module.title}</a>
                  </td>
                  <td>{KIND[e.kind] ?? e.kind}</td>
                  <td>{fmt.duration(e.timeSpentSeconds)}</td>
                  <td>{fmt.score(e.score)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {history.loading && <Loading what="Loading your history" />}
      {history.hasMore && !history.loading && (
        <button type="button" class="load-more" onClick={history.loadMore}>
          Load more
        </button>
      )}
    </section>
  );
}
