// The catalogue and a module's page: browse, read, start, report progress.
import { useEffect, useRef, useState } from 'preact/hooks';
import { newKey, request } from '../api.js';
import { usePaged, useQuery } from '../hooks.js';
import { renderMarkdown } from '../markdown.js';
import { Empty, ErrorNote, Field, Loading, PageTitle, fmt } from '../ui.jsx';

const LEVELS = ['BEGINNER', 'INTERMEDIATE', 'ADVANCED'];
const pickModules = (d) => d.modules;

function useDebounced(value, ms) {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

export function Catalogue() {
  const [search, setSearch] = useState('');
  const [category, setCategory] = useState('');
  const [level, setLevel] = useState('');
  const term = useDebounced(search.trim(), 300);
  const categories = useQuery('Categories');
  const vars = {};
  if (term) vars.search = term;
  if (category) vars.category = category;
  if (level) vars.level = level;
  const list = usePaged('Catalogue', vars, pickModules);

  return (
    <section>
      <PageTitle>Catalogue</PageTitle>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <Field id="cat-search" label="Search">
          {(a) => <input {...a} type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} placeholder="Title, summary or tag" />}
        </Field>
        <Field id="cat-category" label="Category">
          {(a) => (
            <select {...a} value={category} onChange={(e) => setCategory(e.currentTarget.value)}>
              <option value="">All categories</option>
              {(categories.data?.progressStats.byCategory ?? []).map((c) => (
                <option key={c.category} value={c.category}>
                  {c.category}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field id="cat-level" label="Level">
          {(a) => (
            <select {...a} value={level} onChange={(e) => setLevel(e.currentTarget.value)}>
              <option value="">All levels</option>
              {LEVELS.map((l) => (
                <option key={l} value={l}>
                  {fmt.level(l)}
                </option>
              ))}
            </select>
          )}
        </Field>
      </form>
      {list.total != null && (
        <p class="count" aria-live="polite">
          {list.total === 1 ? '1 module' : `${list.total} modules`}
        </p>
      )}
      <ErrorNote error={list.error} onRetry={list.reload} />
      {!list.loading && !list.error && list.list.length === 0 && <Empty>No module matches these filters.</Empty>}
      <ul class="cards">
        {list.list.map((m) => (
          <li key={m.id} class="card">
            <h2>
              <a href={`#/modules/${encodeURIComponent(m.slug)}`}>{m.title}</a>
            </h2>
            <p>{m.summary}</p>
            <p class="meta">
              <span class="tag">{m.category}</span> <span class="tag">{fmt.level(m.level)}</span> <span>{m.durationMinutes} min</span>
              {m.myProgress && <span class={`badge ${m.myProgress.status.toLowerCase()}`}>{fmt.status(m.myProgress.status)}</span>}
            </p>
          </li>
        ))}
      </ul>
      {list.loading && <Loading what="Loading modules" />}
      {list.hasMore && !list.loading && (
        <button type="button" class="load-more" onClick={list.loadMore}>
          Load more
        </button>
      )}
    </section>
  );
}

function ProgressPanel({ module, progress, onChange }) {
  const [minutes, setMinutes] = useState('10');
  const [score, setScore] = useState('');
  const [completed, setCompleted] = useState(false);
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState('');
  /** The report being sent, with its idempotency key, until it is saved. */
  const pending = useRef(null);

  async function start() {
    setBusy(true);
    try {
      const data = await request('StartModule', { moduleId: module.id });
      onChange(data.startModule);
      setSaved('Module started.');
    } catch (error) {
      setErrors({ form: error.message });
    } finally {
      setBusy(false);
    }
  }

  async function report(e) {
    e.preventDefault();
    const errs = {};
    const m = Number(minutes);
    if (!Number.isFinite(m) || m < 0 || m > 1440 || minutes.trim() === '') errs.timeSpentSeconds = 'Enter minutes between 0 and 1440.';
    const s = score.trim() === '' ? null : Number(score);
    if (s != null && (!Number.isFinite(s) || s < 0 || s > 100)) errs.score = 'Enter a score between 0 and 100, or leave it empty.';
    setErrors(errs);
    if (Object.keys(errs).length) return;
    setBusy(true);
    setSaved('');
    try {
      const input = { moduleId: module.id, timeSpentSeconds: Math.round(m * 60), completed };
      if (s != null) input.score = s;
      // One key per report: resending it (the automatic retries, or the
      // learner pressing the button again after an error) is applied once.
      const signature = JSON.stringify(input);
      if (pending.current?.signature !== signature) pending.current = { signature, key: newKey() };
      input.idempotencyKey = pending.current.key;
      const data = await request('RecordProgress', { input }, { idempotent: true });
      pending.current = null;
      onChange(data.recordProgress);
      setSaved('Progress saved.');
    } catch (error) {
      setErrors({ [error.field ?? 'form']: error.message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <aside class="panel" aria-labelledby="progress-heading">
      <h2 id="progress-heading">Your progress</h2>
      {progress ? (
        <dl class="facts" data-testid="module-progress">
          <div>
            <dt>Status</dt>
            <dd>{fmt.status(progress.status)}</dd>
          </div>
          <div>
            <dt>Time spent</dt>
            <dd>{fmt.duration(progress.timeSpentSeconds)}</dd>
          </div>
          <div>
            <dt>Best score</dt>
            <dd>{fmt.score(progress.score)}</dd>
          </div>
        </dl>
      ) : (
        <p>You have not started this module yet.</p>
      )}
      {errors.form && (
        <p class="error-note" role="alert">
          {errors.form}
        </p>
      )}
      {!progress && (
        <button type="button" class="primary" onClick={start} disabled={busy}>
          Start module
        </button>
      )}
      {progress && (
        <form onSubmit={report} noValidate>
          <Field id="rp-minutes" label="Minutes spent since last report" error={errors.timeSpentSeconds}>
            {(a) => <input {...a} type="number" min="0" max="1440" inputMode="numeric" value={minutes} onInput={(e) => setMinutes(e.currentTarget.value)} />}
          </Field>
          <Field id="rp-score" label="Score (0–100, optional)" error={errors.score}>
            {(a) => <input {...a} type="number" min="0" max="100" step="any" value={score} onInput={(e) => setScore(e.currentTarget.value)} />}
          </Field>
          <div class="check">
            <input id="rp-completed" type="checkbox" checked={completed} onChange={(e) => setCompleted(e.currentTarget.checked)} />
            <label for="rp-completed">I completed this module</label>
          </div>
          <button type="submit" class="primary" disabled={busy}>
            Record progress
          </button>
        </form>
      )}
      <p role="status" class="saved">
        {saved}
      </p>
    </aside>
  );
}

export function ModulePage({ slug }) {
  const q = useQuery('ModuleBySlug', { slug });
  const [progress, setProgress] = useState(undefined);
  const module = q.data?.module;
  useEffect(() => setProgress(undefined), [slug]);
  if (q.loading && !module) return <Loading what="Loading the module" />;
  if (q.error) return <ErrorNote error={q.error} onRetry={q.reload} />;
  if (!module) {
    return (
      <section>
        <PageTitle>Module not found</PageTitle>
        <p>
          <a href="#/catalogue">Back to the catalogue</a>
        </p>
      </section>
    );
  }
  return (
    <article class="module">
      <p>
        <a href="#/catalogue">← Catalogue</a>
      </p>
      <PageTitle>{module.title}</PageTitle>
      <p class="meta">
        <span class="tag">{module.category}</span> <span class="tag">{fmt.level(module.level)}</span> <span>{module.durationMinutes} min</span>
        {module.tags.map((t) => (
          <span key={t} class="tag subtle">
            #{t}
          </span>
        ))}
      </p>
      <p class="lead">{module.summary}</p>
      <div class="module-body">
        {/* Sanitized by DOMPurify in renderMarkdown. */}
        <div class="markdown" dangerouslySetInnerHTML={{ __html: renderMarkdown(module.content) }} />
        <ProgressPanel module={module} progress={progress === undefined ? module.myProgress : progress} onChange={setProgress} />
      </div>
    </article>
  );
}
