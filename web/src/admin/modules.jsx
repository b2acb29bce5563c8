// Admin: the modules, published or not, and the editor that creates and
// updates them. Field rules mirror the service's (src/admin/modules.rs);
// what the service refuses anyway is shown by the field it names.
import { useEffect, useState } from 'preact/hooks';
import { request } from '../api.js';
import { usePaged, useQuery } from '../hooks.js';
import { navigate } from '../router.js';
import { Empty, ErrorNote, Field, Loading, PageTitle, fmt } from '../ui.jsx';

const pick = (d) => d.modules;

export function ModuleList() {
  const [search, setSearch] = useState('');
  const [term, setTerm] = useState('');
  const [error, setError] = useState(null);
  const [status, setStatus] = useState('');
  const [confirming, setConfirming] = useState(null);
  useEffect(() => {
    const t = setTimeout(() => setTerm(search.trim()), 300);
    return () => clearTimeout(t);
  }, [search]);
  const list = usePaged('AdminModules', term ? { search: term } : {}, pick, { pageSize: 20 });

  async function publish(m, published) {
    setError(null);
    try {
      await request('UpdateModule', { id: m.id, input: { published } });
      setStatus(`“${m.title}” ${published ? 'published: learners are being notified' : 'unpublished'}.`);
      list.reload();
    } catch (e) {
      setError(e);
    }
  }
  async function remove(m) {
    setError(null);
    setConfirming(null);
    try {
      await request('DeleteModule', { id: m.id });
      setStatus(`“${m.title}” deleted.`);
      list.reload();
    } catch (e) {
      setError(e);
    }
  }

  return (
    <section>
      <PageTitle>Modules</PageTitle>
      <p>
        <a class="button primary" href="#/admin/modules/new">
          New module
        </a>
      </p>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <Field id="mods-search" label="Search">
          {(a) => <input {...a} type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />}
        </Field>
      </form>
      <p role="status">{status}</p>
      <ErrorNote error={error} />
      <ErrorNote error={list.error} onRetry={list.reload} />
      {!list.loading && !list.error && list.list.length === 0 && <Empty>No module yet.</Empty>}
      {list.list.length > 0 && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Position</th>
                <th scope="col">Title</th>
                <th scope="col">Category</th>
                <th scope="col">Level</th>
                <th scope="col">State</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.list.map((m) => (
                <tr key={m.id}>
                  <td>{m.position}</td>
                  <td>
                    <a href={`#/admin/modules/${m.id}`}>{m.title}</a>
                  </td>
                  <td>{m.category}</td>
                  <td>{fmt.level(m.level)}</td>
                  <td>{m.published ? 'Published' : 'Draft'}</td>
                  <td class="actions">
                    <button type="button" onClick={() => publish(m, !m.published)} aria-label={`${m.published ? 'Unpublish' : 'Publish'} ${m.title}`}>
                      {m.published ? 'Unpublish' : 'Publish'}
                    </button>
                    {confirming === m.id ? (
                      <>
                        <button type="button" class="danger" onClick={() => remove(m)} aria-label={`Confirm deleting ${m.title}`}>
                          Confirm delete
                        </button>
                        <button type="button" onClick={() => setConfirming(null)}>
                          Cancel
                        </button>
                      </>
                    ) : (
                      <button type="button" class="danger" onClick={() => setConfirming(m.id)} aria-label={`Delete ${m.title}`}>
                        Delete
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {list.loading && <Loading what="Loading modules" />}
      {list.hasMore && !list.loading && (
        <button type="button" class="load-more" onClick={list.loadMore}>
          Load more
        </button>
      )}
    </section>
  );
}

/** A new module's fields, in the order of the form. */
const EMPTY = {
  title: '',
  slug: '',
  summary: '',
  category: '',
  level: 'BEGINNER',
  durationMinutes: '30',
  position: '0',
  tags: '',
  content: '',
  published: false,
};

/** The errors of `v` by field, as the service would give them. */
export function validate(v) {
  const e = {};
  if (!/^[a-z0-9-]{1,100}$/.test(v.slug)) e.slug = 'Use 1 to 100 lowercase letters, digits or hyphens.';
  for (const [field, max] of [
    ['title', 200],
    ['summary', 2000],
    ['category', 100],
  ]) {
    const t = v[field].trim();
    if (!t) e[field] = 'Required.';
    else if (t.length > max) e[field] = `At most ${max} characters.`;
  }
  const d = Number(v.durationMinutes);
  if (!Number.isInteger(d) || d < 1 || d > 10000) e.durationMinutes = 'A whole number of minutes, 1 or more.';
  const p = Number(v.position);
  if (!Number.isInteger(p) || p < 0 || String(v.position).trim() === '') e.position = 'A whole number, 0 or more.';
  return e;
}

export function ModuleEditor({ id }) {
  const existing = useQuery('AdminModule', { id: id ?? '' }, { skip: !id });
  const [values, setValues] = useState(EMPTY);
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const m = existing.data?.module;
  useEffect(() => {
    if (m) {
      setValues({ ...m, tags: m.tags.join(', '), durationMinutes: String(m.durationMinutes), position: String(m.position) });
    }
  }, [m?.id]);

  const bind = (name) => ({
    value: values[name],
    onInput: (e) => setValues((v) => ({ ...v, [name]: e.currentTarget.value })),
  });

  async function save(e) {
    e.preventDefault();
    const errs = validate(values);
    setErrors(errs);
    const firstBad = Object.keys(EMPTY).find((f) => errs[f]);
    if (firstBad) {
      document.getElementById(`mod-${firstBad}`)?.focus();
      return;
    }
    const input = {
      slug: values.slug,
      title: values.title.trim(),
      summary: values.summary.trim(),
      category: values.category.trim(),
      level: values.level,
      tags: values.tags
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean),
      durationMinutes: Number(values.durationMinutes),
      position: Number(values.position),
      published: values.published,
      content: values.content,
    };
    setBusy(true);
    try {
      if (id) await request('UpdateModule', { id, input });
      else await request('CreateModule', { input });
      navigate('/admin/modules');
    } catch (error) {
      const field = error.field && error.field in EMPTY ? error.field : 'form';
      setErrors({ [field]: error.message });
      document.getElementById(field === 'form' ? 'mod-form-error' : `mod-${field}`)?.focus();
    } finally {
      setBusy(false);
    }
  }

  if (id && existing.loading && !m) return <Loading what="Loading the module" />;
  if (id && existing.error) return <ErrorNote error={existing.error} onRetry={existing.reload} />;
  const text = (name, label, props = {}) => (
    <Field id={`mod-${name}`} label={label} error={errors[name]} hint={props.hint}>
      {(a) => <input {...a} {...bind(name)} {...props} hint={undefined} />}
    </Field>
  );

  return (
    <section>
      <p>
        <a href="#/admin/modules">← Modules</a>
      </p>
      <PageTitle>{id ? `Edit “${m?.title ?? ''}”` : 'New module'}</PageTitle>
      {errors.form && (
        <p id="mod-form-error" class="error-note" role="alert" tabIndex={-1}>
          {errors.form}
        </p>
      )}
      <form onSubmit={save} noValidate class="editor">
        {text('title', 'Title')}
        {text('slug', 'Slug', { hint: 'Lowercase letters, digits and hyphens; the module’s address' })}
        <Field id="mod-summary" label="Summary" error={errors.summary}>
          {(a) => <textarea {...a} {...bind('summary')} rows="2" />}
        </Field>
        <div class="row">
          {text('category', 'Category')}
          <Field id="mod-level" label="Level" error={errors.level}>
            {(a) => (
              <select {...a} value={values.level} onChange={(e) => setValues((v) => ({ ...v, level: e.currentTarget.value }))}>
                <option value="BEGINNER">Beginner</option>
                <option value="INTERMEDIATE">Intermediate</option>
                <option value="ADVANCED">Advanced</option>
              </select>
            )}
          </Field>
        </div>
        <div class="row">
          {text('durationMinutes', 'Duration (minutes)', { type: 'number', min: '1' })}
          {text('position', 'Position in the catalogue', { type: 'number', min: '0' })}
        </div>
        {text('tags', 'Tags', { hint: 'Separated by commas' })}
        <Field id="mod-content" label="Content (Markdown)" error={errors.content}>
          {(a) => <textarea {...a} {...bind('content')} rows="12" />}
        </Field>
        <div class="check">
          <input id="mod-published" type="checkbox" checked={values.published} onChange={(e) => setValues((v) => ({ ...v, published: e.currentTarget.checked }))} />
          <label for="mod-published">Published (learners are notified)</label>
        </div>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Saving…' : id ? 'Save changes' : 'Create module'}
        </button>
      </form>
    </section>
  );
}
