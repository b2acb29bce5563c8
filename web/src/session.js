// The signed-in user, kept for the tab only (sessionStorage): closing the
// tab signs out, and another tab signs in on its own.
const KEY = 'kairos.session';

function read() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) ?? null;
  } catch {
    return null;
  }
}

export const session = {
  /** `{ token, expiresAt, user: { id, username, displayName, role } }` or null. */
  current: read,
  token: () => read()?.token ?? null,
  save(payload) {
    sessionStorage.setItem(KEY, JSON.stringify(payload));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};
