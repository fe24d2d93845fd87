// Renders a laid-out chart as standalone SVG. Every state's group carries
// `data-state="<id>"`, which the dashboard uses to light the states a running actor is in.
import { CHAR_W, LINE_H, type ChartLayout } from './layout.js';

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n = (v: number): string => (Math.round(v * 10) / 10).toString();

/** Class names are stable: the dashboard's stylesheet and tests rely on them. */
export function renderSvg(layout: ChartLayout): string {
  const id = layout.graph.id.replace(/[^A-Za-z0-9_-]/g, '_');
  const w = Math.ceil(layout.width);
  const h = Math.ceil(layout.height);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${esc(layout.graph.id)}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">`,
    `<defs><marker id="arrow-${id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>`,
    `<rect class="chart-bg" x="0" y="0" width="${w}" height="${h}" fill="#fff"/>`,
  );
  // Outer boxes first (ELK lists parents before children), so children paint on top.
  for (const b of layout.boxes) {
    if (b.id.startsWith('init:')) {
      out.push(`<circle class="initial" cx="${n(b.x + b.width / 2)}" cy="${n(b.y + b.height / 2)}" r="${n(b.width / 2)}" fill="#333"/>`);
      continue;
    }
    if (b.id === 'any') {
      out.push(
        `<g class="pseudo any"><rect x="${n(b.x)}" y="${n(b.y)}" width="${n(b.width)}" height="${n(b.height)}" rx="6" fill="#fafafa" stroke="#999" stroke-dasharray="4 3"/>`,
        `<text x="${n(b.x + 10)}" y="${n(b.y + 17)}" fill="#666">any state</text></g>`,
      );
      continue;
    }
    const s = b.state!;
    const kind = s.type === 'compound' || s.type === 'parallel' ? 'compound' : s.type;
    out.push(`<g class="state ${kind}" data-state="${esc(s.id)}">`);
    out.push(`<rect class="box" x="${n(b.x)}" y="${n(b.y)}" width="${n(b.width)}" height="${n(b.height)}" rx="8" fill="${kind === 'compound' ? '#f4f7fb' : '#fff'}" stroke="#456" stroke-width="1.4"/>`);
    if (s.type === 'final') out.push(`<rect class="final-ring" x="${n(b.x + 3)}" y="${n(b.y + 3)}" width="${n(b.width - 6)}" height="${n(b.height - 6)}" rx="6" fill="none" stroke="#456"/>`);
    out.push(`<text class="name" x="${n(b.x + 10)}" y="${n(b.y + 18)}" font-weight="bold" fill="#123">${esc(s.key)}</text>`);
    b.lines.forEach((l, i) => out.push(`<text class="detail" x="${n(b.x + 10)}" y="${n(b.y + 18 + (i + 1) * LINE_H)}" fill="#567" font-size="11">${esc(l)}</text>`));
    out.push('</g>');
  }
  for (const e of layout.edges) {
    const d = e.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${n(p.x)},${n(p.y)}`).join(' ');
    out.push(`<g class="transition" data-source="${esc(e.source)}" data-target="${esc(e.target)}"><path d="${d}" fill="none" stroke="#555" stroke-width="1.1" marker-end="url(#arrow-${id})"/>`);
    if (e.labelAt && e.label) {
      const a = e.labelAt;
      out.push(
        `<rect x="${n(a.x)}" y="${n(a.y)}" width="${n(Math.max(a.width, e.label.length * CHAR_W))}" height="${n(a.height)}" fill="#fff" fill-opacity="0.85"/>`,
        `<text x="${n(a.x + 2)}" y="${n(a.y + a.height - 4)}" fill="#333" font-size="11">${esc(e.label)}</text>`,
      );
    }
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
