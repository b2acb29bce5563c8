// The shell: who is signed in, the navigation with the unread count, the
// service banners, and which screen the hash route shows.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { CacheAdmin, Dashboard, Jobs, Users } from './admin/dashboard.jsx';
import { ModuleEditor, ModuleList } from './admin/modules.jsx';
import { apiEvents } from './api.js';
import { RetryEpoch } from './hooks.js';
import { Login, Register } from './pages/auth.jsx';
import { Catalogue, ModulePage } from './pages/learn.jsx';
import { Notifications } from './pages/notifications.jsx';
import { MyProgress } from './pages/progress.jsx';
import { navigate, useRoute } from './router.js';
import { session } from './session.js';
import { PageTitle } from './ui.jsx';
import { pollUnread } from './unread.js';
import './styles.css';

const LEARNER_NAV = [
  ['/catalogue', 'Catalogue'],
  ['/progress', 'My progress'],
  ['/notifications', 'Notifications'],
];
const ADMIN_NAV = [
  ['/admin', 'Dashboard'],
  ['/admin/modules', 'Modules'],
  ['/admin/users', 'Users'],
  ['/admin/jobs', 'Jobs'],
  ['/admin/cache', 'Cache'],
  ['/catalogue', 'Catalogue'],
];

const home = (user) => (user?.role === 'ADMIN' ? '/admin' : '/catalogue');

function Screen({ route, user, onSignedIn, notice, onRead }) {
  const [a, b, c] = route.parts;
  if (!user) {
    if (a === 'register') return <Register onSignedIn={onSignedIn} />;
    return <Login onSignedIn={onSignedIn} notice={notice} />;
  }
  if (a === 'admin' && user.role !== 'ADMIN') {
    return <PageTitle>Only administrators may open this page</PageTitle>;
  }
  switch (a) {
    case 'catalogue':
      return <Catalogue />;
    case 'modules':
      return <ModulePage slug={b} key={b} />;
    case 'progress':
      return <MyProgress />;
    case 'notifications':
      return <Notifications onRead={onRead} />;
    case 'admin':
      if (!b) return <Dashboard />;
      if (b === 'users') return <Users />;
      if (b === 'jobs') return <Jobs />;
      if (b === 'cache') return <CacheAdmin />;
      if (b === 'modules' && c === 'new') return <ModuleEditor key="new" />;
      if (b === 'modules' && c) return <ModuleEditor id={c} key={c} />;
      if (b === 'modules') return <ModuleList />;
      break;
    default:
  }
  return (
    <>
      <PageTitle>Page not found</PageTitle>
      <p>
        <a href={`#${home(user)}`}>Go to the start page</a>
      </p>
    </>
  );
}

function App() {
  const route = useRoute();
  const [user, setUser] = useState(() => session.current()?.user ?? null);
  const [notice, setNotice] = useState('');
  const [banner, setBanner] = useState(null);
  const [epoch, setEpoch] = useState(0);
  const [unread, setUnread] = useState(0);
  const poller = useRef(null);
  const main = useRef(null);

  useEffect(() => {
    const handlers = {
      unauthenticated: () => {
        session.clear();
        setUser(null);
        setNotice('Your session has ended. Please sign in again.');
        navigate('/login');
      },
      unavailable: () => setBanner({ kind: 'unavailable' }),
      'rate-limited': (e) => setBanner({ kind: 'rate', wait: e.detail }),
      recovered: () => setBanner((b) => (b ? null : b)),
    };
    for (const [name, fn] of Object.entries(handlers)) apiEvents.addEventListener(name, fn);
    return () => {
      for (const [name, fn] of Object.entries(handlers)) apiEvents.removeEventListener(name, fn);
    };
  }, []);

  useEffect(() => {
    if (!user || user.role === 'ADMIN') return undefined;
    poller.current = pollUnread(setUnread);
    return () => {
      poller.current.stop();
      poller.current = null;
    };
  }, [user]);

  // Each screen change reads the count again (cheap: an index-backed count).
  useEffect(() => {
    poller.current?.refresh();
    if (user && (route.path === '/' || route.parts[0] === 'login' || route.parts[0] === 'register')) {
      navigate(home(user));
    }
  }, [route.path, user]);

  function onSignedIn(payload) {
    session.save(payload);
    setNotice('');
    setUser(payload.user);
    navigate(home(payload.user));
  }

  function signOut() {
    session.clear();
    setUser(null);
    setUnread(0);
    setNotice('You are signed out.');
    navigate('/login');
  }

  const nav = user ? (user.role === 'ADMIN' ? ADMIN_NAV : LEARNER_NAV) : [];
  const current = (path) => route.path === path || (path !== '/admin' && route.path.startsWith(`${path}/`));

  return (
    <RetryEpoch.Provider value={epoch}>
      <a
        class="skip"
        href="#main"
        onClick={(e) => {
          e.preventDefault();
          main.current?.focus();
        }}
      >
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={`#${home(user)}`}>
          Kairos
        </a>
        {user && (
          <nav aria-label="Main">
            <ul>
              {nav.map(([path, label]) => (
                <li key={path}>
                  <a href={`#${path}`} aria-current={current(path) ? 'page' : undefined}>
                    {label}
                    {path === '/notifications' && unread > 0 && (
                      <span class="count-badge" data-testid="unread-count" aria-label={`${unread} unread`}>
                        {unread}
                      </span>
                    )}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
        )}
        {user && (
          <div class="who">
            <span>{user.displayName || user.username}</span>
            <button type="button" onClick={signOut}>
              Sign out
            </button>
          </div>
        )}
      </header>
      {banner && (
        <div class={`banner ${banner.kind}`} role="alert">
          {banner.kind === 'unavailable' ? (
            <>
              <span>The service is unavailable right now.</span>
              <button
                type="button"
                onClick={() => {
                  setBanner(null);
                  setEpoch((n) => n + 1);
                }}
              >
                Retry
              </button>
            </>
          ) : (
            <span>Too many requests: trying again in {banner.wait} s…</span>
          )}
        </div>
      )}
      <main id="main" tabIndex={-1} ref={main}>
        <Screen route={route} user={user} onSignedIn={onSignedIn} notice={notice} onRead={() => poller.current?.refresh()} />
      </main>
    </RetryEpoch.Provider>
  );
}

render(<App />, document.getElementById('app'));
