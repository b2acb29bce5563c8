// The viewer's notifications, newest first, with "mark all read".
import { useState } from 'preact/hooks';
import { request } from '../api.js';
import { usePaged } from '../hooks.js';
import { Empty, ErrorNote, Loading, PageTitle, fmt } from '../ui.jsx';

const pick = (d) => d.notifications;

export function Notifications({ onRead }) {
  const list = usePaged('Notifications', {}, pick, { pageSize: 20 });
  const [error, setError] = useState(null);
  const unread = list.list.filter((n) => !n.read);

  async function markRead(ids) {
    setError(null);
    try {
      await request('MarkRead', { ids });
      list.reload();
      onRead();
    } catch (e) {
      setError(e);
    }
  }

  return (
    <section>
      <PageTitle>Notifications</PageTitle>
      <ErrorNote error={error} />
      <ErrorNote error={list.error} onRetry={list.reload} />
      {unread.length > 0 && (
        <button type="button" onClick={() => markRead(null)}>
          Mark all as read
        </button>
      )}
      {!list.loading && !list.error && list.list.length === 0 && <Empty>No notifications yet.</Empty>}
      <ul class="notifications">
        {list.list.map((n) => (
          <li key={n.id} class={n.read ? 'read' : 'unread'}>
            <p>
              {!n.read && <span class="badge">New</span>} {n.message}
            </p>
            <p class="meta">
              <time dateTime={n.createdAt}>{fmt.date(n.createdAt)}</time>
              {n.module && (
                <>
                  {' · '}
                  <a href={`#/modules/${encodeURIComponent(n.module.slug)}`}>Open “{n.module.title}”</a>
                </>
              )}
              {!n.read && (
                <>
                  {' · '}
                  <button type="button" class="link" onClick={() => markRead([n.id])}>
                    Mark as read
                  </button>
                </>
              )}
            </p>
          </li>
        ))}
      </ul>
      {list.loading && <Loading what="Loading notifications" />}
      {list.hasMore && !list.loading && (
        <button type="button" class="load-more" onClick={list.loadMore}>
          Load more
        </button>
      )}
    </section>
  );
}
