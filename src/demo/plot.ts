/**
 * A small self-contained SVG line chart: packets/s per host, app and action
 * over time, with the migration steps marked. No dependencies.
 */
import type { RateSample } from './monitor.js';

export interface Marker {
  t: number;
  label: string;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function renderSvg(title: string, samples: readonly RateSample[], markers: readonly Marker[]): string {
  const W = 960;
  const H = 480;
  const L = 70;
  const R = 190;
  const T = 40;
  const B = 50;
  const series = [...new Set(samples.flatMap((s) => Object.keys(s.pps)))]
    .filter((k) => samples.some((s) => (s.pps[k] ?? 0) > 0))
    .sort();
  const tMax = Math.max(1, ...samples.map((s) => s.t), ...markers.map((m) => m.t));
  const yMaxRaw = Math.max(1, ...samples.flatMap((s) => Object.values(s.pps)));
  const mag = 10 ** Math.floor(Math.log10(yMaxRaw));
  const yMax = Math.ceil(yMaxRaw / mag) * mag;
  const x = (t: number): number => L + ((W - L - R) * t) / tMax;
  const y = (v: number): number => H - B - ((H - T - B) * v) / yMax;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">time (s)</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">packets/s</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5;
    out.push(`<line x1="${L - 4}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}" stroke="#eee"/>`);
    out.push(`<text x="${L - 8}" y="${y(v) + 4}" text-anchor="end">${Math.round(v)}</text>`);
  }
  const step = tMax > 20 ? 5 : tMax > 8 ? 2 : 1;
  for (let t = 0; t <= tMax; t += step) out.push(`<text x="${x(t)}" y="${H - B + 16}" text-anchor="middle">${t}</text>`);
  markers.forEach((m, i) => {
    out.push(`<line x1="${x(m.t)}" y1="${T}" x2="${x(m.t)}" y2="${H - B}" stroke="#888" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${x(m.t) + 3}" y="${T + 12 + (i % 4) * 13}" fill="#555">${esc(m.label)}</text>`);
  });
  series.forEach((k, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = samples.map((s) => `${x(s.t).toFixed(1)},${y(s.pps[k] ?? 0).toFixed(1)}`).join(' ');
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>`);
    out.push(`<rect x="${W - R + 12}" y="${T + i * 18}" width="12" height="12" fill="${color}"/>`);
    out.push(`<text x="${W - R + 30}" y="${T + i * 18 + 10}">${esc(k)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
