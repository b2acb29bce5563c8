// The unread-notification count, kept fresh by polling: the running schema
// has no subscriptions yet. Anything with this shape — `start(onCount)`
// returning `{ refresh, stop }` — can replace it, e.g. a subscription to
// the contract's `notificationAdded` that calls onCount on each event.
import { request } from './api.js';

/** How often the count is read again while the tab is visible. */
export const POLL_MS = 30_000;

export function pollUnread(onCount, { interval = POLL_MS } = {}) {
  let stopped = false;
  async function refresh() {
    if (stopped) return;
    try {
      const data = await request('UnreadCount');
      if (!stopped) onCount(data.unreadNotificationCount);
    } catch {
      // The shell shows the banners; the next poll tries again.
    }
  }
  const timer = setInterval(() => document.visibilityState === 'visible' && refresh(), interval);
  const onVisible = () => document.visibilityState === 'visible' && refresh();
  document.addEventListener('visibilitychange', onVisible);
  refresh();
  return {
    refresh,
    stop() {
      stopped = true;
      clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisible);
    },
  };
}
