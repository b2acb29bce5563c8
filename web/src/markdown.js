// Module content is Markdown written by admins: rendered with marked, then
// sanitized with DOMPurify so that no HTML in it can run script or load
// from elsewhere (images from other origins lose their source; the
// page's Content-Security-Policy would refuse them anyway).
import DOMPurify from 'dompurify';
import { marked } from 'marked';

/** Whether an image source is this origin's (or a data: image). */
function local(src) {
  if (src.startsWith('data:image/')) return true;
  try {
    return new URL(src, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'IMG' && !local(node.getAttribute('src') ?? '')) {
    node.removeAttribute('src');
    node.removeAttribute('srcset');
  }
  if (node.tagName === 'A' && node.getAttribute('href')) {
    node.setAttribute('rel', 'noopener noreferrer');
  }
});

export function renderMarkdown(text) {
  const html = marked.parse(text ?? '', { async: false, gfm: true });
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS: ['style', 'form', 'input'], FORBID_ATTR: ['style'] });
}
