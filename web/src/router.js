// Hash routes (#/catalogue, #/modules/<slug>, …): the service serves one
// page at /app, and a reload or a shared link lands on the same screen.
import { useEffect, useState } from 'preact/hooks';

export function parse(hash) {
  const path = hash.replace(/^#/, '') || '/';
  const [pathname, query = ''] = path.split('?');
  return { path: pathname, parts: pathname.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

export function useRoute() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return parse(hash);
}

export function navigate(path) {
  if (location.hash !== `#${path}`) location.hash = path;
}
