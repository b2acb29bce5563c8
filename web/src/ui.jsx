// Small building blocks shared by the screens: states, form fields,
// figures and two SVG charts (drawn here: two shapes did not justify a
// charting library's weight, and the SVG carries its own accessible text).
import { useEffect, useRef } from 'preact/hooks';

export const fmt = {
  duration(seconds) {
    const s = Math.max(0, Math.round(seconds ?? 0));
    if (s < 60) return `${s} s`;
    const m = Math.round(s / 60);
    if (m < 60) return `${m} min`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  },
  percent: (x) => `${Math.round((x ?? 0) * 100)}%`,
  score: (x) => (x == null ? '—' : `${Math.round(x * 10) / 10}`),
  date: (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : '—'),
  day: (iso) => new Date(iso).toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' }),
  level: (l) => (l ? l[0] + l.slice(1).toLowerCase() : ''),
  status: (s) => ({ NOT_STARTED: 'Not started', IN_PROGRESS: 'In progress', COMPLETED: 'Completed' })[s] ?? s,
};

/** The screen's heading, focused when the screen opens so a screen reader announces it. */
export function PageTitle({ children }) {
  const ref = useRef(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <h1 tabIndex={-1} ref={ref}>
      {children}
    </h1>
  );
}

export function Loading({ what = 'Loading' }) {
  return (
    <p class="state" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> {what}…
    </p>
  );
}

export function Empty({ children }) {
  return <p class="state empty">{children}</p>;
}

export function ErrorNote({ error, onRetry }) {
  if (!error) return null;
  return (
    <div class="error-note" role="alert">
      <p>{error.message}</p>
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

/** A labelled control with its error below it, tied by aria-describedby. */
export function Field({ id, label, error, hint, children }) {
  const described = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(' ') || undefined;
  const control = children({ id, 'aria-invalid': error ? 'true' : undefined, 'aria-describedby': described });
  return (
    <div class={`field${error ? ' has-error' : ''}`}>
      <label for={id}>{label}</label>
      {control}
      {hint && (
        <small id={`${id}-hint`} class="hint">
          {hint}
        </small>
      )}
      {error && (
        <small id={`${id}-error`} class="field-error">
          {error}
        </small>
      )}
    </div>
  );
}

export function Stat({ label, value, testid }) {
  return (
    <div class="stat" data-testid={testid}>
      <dt>{label}</dt>
      <dd>{value}</dd>
    </div>
  );
}

/** Horizontal bars: one row per item, values scaled to `max` (default the largest). */
export function BarChart({ title, data, max, format = String }) {
  const top = max ?? Math.max(1, ...data.map((d) => d.value));
  const row = 28;
  const labelW = 150;
  const width = 520;
  const barW = width - labelW - 70;
  const summary = data.map((d) => `${d.label}: ${format(d.value)}`).join('; ');
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${width} ${Math.max(row, data.length * row)}`} role="img" aria-label={`${title}. ${summary}`}>
        {data.map((d, i) => (
          <g key={d.label} transform={`translate(0 ${i * row})`}>
            <text x={labelW - 8} y={row / 2 + 5} text-anchor="end" class="chart-label">
              {d.label.length > 18 ? `${d.label.slice(0, 17)}…` : d.label}
            </text>
            <rect x={labelW} y={5} height={row - 10} width={Math.max(1, (d.value / top) * barW)} rx="3" class="chart-bar" />
            <text x={labelW + Math.max(1, (d.value / top) * barW) + 6} y={row / 2 + 5} class="chart-value">
              {format(d.value)}
            </text>
          </g>
        ))}
      </svg>
    </figure>
  );
}

/** Vertical columns over time (one per day), labelled every few columns. */
export function ColumnChart({ title, data, format = String }) {
  const width = 520;
  const height = 160;
  const base = height - 22;
  const top = Math.max(1, ...data.map((d) => d.value));
  const step = width / Math.max(1, data.length);
  const every = Math.ceil(data.length / 7);
  const summary = data.filter((d) => d.value > 0).map((d) => `${d.label}: ${format(d.value)}`).join('; ') || 'no activity';
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${title}. ${summary}`}>
        <line x1="0" x2={width} y1={base} y2={base} class="chart-axis" />
        {data.map((d, i) => {
          const h = (d.value / top) * (base - 8);
          return (
            <g key={d.label}>
              <rect x={i * step + step * 0.15} y={base - h} width={step * 0.7} height={h} rx="2" class="chart-bar" />
              {(data.length - 1 - i) % every === 0 && (
                <text
                  x={i === 0 ? 0 : i === data.length - 1 ? width : i * step + step / 2}
                  y={height - 6}
                  text-anchor={i === 0 ? 'start' : i === data.length - 1 ? 'end' : 'middle'}
                  class="chart-label"
                >
                  {d.label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
    </figure>
  );
}
