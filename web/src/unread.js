// The unread-notification count: read once, then kept fresh by the
// `notificationAdded` subscription (each event, and each reconnection,
// reads the count again: an index-backed count, exact where a local +1
// could drift). While the socket is down the count is polled instead.
import { request, subscribe } from './api.js';

/** How often the count is read while the live socket is not connected. */
export const POLL_MS = 30_000;

export function liveUnread(onCount, { interval = POLL_MS } = {}) {
  let stopped = false;
  let live = false;
  async function refresh() {
    if (stopped) return;
    try {
      const data = await request('UnreadCount');
      if (!stopped) onCount(data.unreadNotificationCount);
    } catch {
      // The shell shows the banners; the next event or poll tries again.
    }
  }
  const stopLive = subscribe('NotificationAdded', {}, {
    next: refresh,
    connected() {
      live = true;
      refresh();
    },
    disconnected() {
      live = false;
    },
  });
  const visible = () => document.visibilityState === 'visible';
  const timer = setInterval(() => !live && visible() && refresh(), interval);
  const onVisible = () => visible() && refresh();
  document.addEventListener('visibilitychange', onVisible);
  refresh();
  return {
    refresh,
    stop() {
      stopped = true;
      stopLive();
      clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisible);
    },
  };
}
