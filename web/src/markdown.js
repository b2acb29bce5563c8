// Module content is Markdown written by admins: rendered with marked, with
// HTML in it shown as text (never parsed as HTML, so no handler in it can
// even be refused by the Content-Security-Policy), then sanitized with
// DOMPurify so that no link or image can run script or load from elsewhere
// (images from other origins lose their source; the page's policy would
// refuse them anyway).
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

const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ENTITIES[c]);

marked.use({ renderer: { html: ({ text }) => escapeHtml(text) } });

export function renderMarkdown(text) {
  const html = marked.parse(text ?? '', { async: false, gfm: true });
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS: ['style', 'form', 'input'], FORBID_ATTR: ['style'] });
}
