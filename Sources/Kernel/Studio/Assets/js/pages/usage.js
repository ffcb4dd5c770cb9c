// Usage: each metric per portal as an SVG bar chart drawn here (no chart library), the
// quota states (a banner for a soft limit, red for a hard one), and the billing summary of
// a chosen month (AAL2: the Studio asks for the second factor). Data: /v1/hub/usage,
// /v1/hub/quotas, /v1/hub/billing (docs/hub.md).

import { h, replace, field, notice, busy } from '../dom.js';

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes and children (text via textContent only). */
function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    element.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return element;
}

/** 1234567 as "1.23M". */
function short(value) {
  const units = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [size, suffix] of units) if (Math.abs(value) >= size) return `${(value / size).toFixed(2).replace(/\.?0+$/, '')}${suffix}`;
  return String(Math.round(value * 100) / 100);
}

/** A bar chart of `points` ([{label, value}]) with its largest value on the axis. */
export function barChart(points, { title, width = 560, height = 160 } = {}) {
  const max = Math.max(1, ...points.map((p) => p.value));
  const left = 48, bottom = 22, top = 8;
  const inner = width - left - 8;
  // At most 48 units a bar: a single day is a bar, not a block.
  const barWidth = Math.min(48, points.length ? inner / points.length : inner);
  const scale = (height - bottom - top) / max;
  const bars = points.map((p, i) => {
    const barHeight = Math.max(p.value > 0 ? 1 : 0, p.value * scale);
    return s('rect', {
      class: 'usage-bar', x: (left + i * barWidth + 1).toFixed(1), y: (height - bottom - barHeight).toFixed(1),
      width: Math.max(1, barWidth - 2).toFixed(1), height: barHeight.toFixed(1),
    }, s('title', {}, `${p.label}: ${p.value}`));
  });
  const labels = points.length > 1 ? [points[0], points[points.length - 1]] : points;
  return s('svg', { class: 'usage-chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, 'data-test': 'usage-chart' },
    s('line', { class: 'usage-axis', x1: left, y1: height - bottom, x2: width - 8, y2: height - bottom }),
    s('line', { class: 'usage-axis', x1: left, y1: top, x2: left, y2: height - bottom }),
    s('text', { class: 'usage-label', x: left - 4, y: top + 10, 'text-anchor': 'end' }, short(max)),
    s('text', { class: 'usage-label', x: left - 4, y: height - bottom, 'text-anchor': 'end' }, '0'),
    labels.map((p, i) => s('text', {
      class: 'usage-label', x: i === 0 ? left : Math.min(width - 8, left + points.length * barWidth), y: height - 6, 'text-anchor': i === 0 ? 'start' : 'end',
    }, p.label)),
    bars);
}

/** Rows of /v1/hub/usage as {metric: {portal: [{label, value}]}} (dimensions summed). */
function series(rows) {
  const byMetric = {};
  for (const row of rows) {
    const portals = (byMetric[row.metric] ||= {});
    const points = (portals[row.portal] ||= new Map());
    points.set(row.period, (points.get(row.period) || 0) + row.value);
  }
  const result = {};
  for (const [metric, portals] of Object.entries(byMetric)) {
    result[metric] = {};
    for (const [portal, points] of Object.entries(portals)) {
      result[metric][portal] = [...points.entries()].sort(([a], [b]) => a.localeCompare(b))
        .map(([period, value]) => ({ label: period.slice(0, 16).replace('T', ' '), value }));
    }
  }
  return result;
}

export function quotaBanners(quotas) {
  return quotas.filter((q) => q.level !== 'ok').map((q) => h('p', {
    class: `notice ${q.level === 'hard' ? 'notice-error' : 'notice-warning'}`, role: 'alert', 'data-test': 'quota-banner', 'data-level': q.level,
  }, q.level === 'hard'
    ? `Portal ${q.portal} reached its hard quota ${q.quota} (${short(q.total)} of ${short(q.hard)}): its requests are refused with 429 until the month ends.`
    : `Portal ${q.portal} passed its soft quota ${q.quota} (${short(q.total)} of ${short(q.soft)}${q.hard != null ? `; hard limit ${short(q.hard)}` : ''}).`));
}

export default {
  id: 'usage',
  title: 'Usage & billing',
  async render({ api }) {
    const now = new Date();
    const month = now.toISOString().slice(0, 7);
    const portal = field('Portal', { name: 'portal', placeholder: 'all portals', autocomplete: 'off' });
    const from = field('From', { name: 'from', type: 'date', value: `${month}-01` });
    const to = field('To', { name: 'to', type: 'date' });
    const granularity = h('select', { id: 'usage-granularity', name: 'granularity' },
      ['hour', 'day', 'month'].map((g) => h('option', { value: g, selected: g === 'day' }, g)));
    const status = notice();
    const charts = h('div', { 'data-test': 'usage-charts' });
    const quotaBox = h('div', { 'data-test': 'quota-states' });

    const load = async () => {
      status.clear();
      [portal, from, to].forEach((f) => f.clear());
      const query = new URLSearchParams({ granularity: granularity.value });
      if (portal.input.value.trim()) query.set('portal', portal.input.value.trim());
      if (from.input.value) query.set('from', from.input.value);
      if (to.input.value) query.set('to', to.input.value);
      try {
        const answer = await api.get(`/v1/hub/usage?${query}`);
        const data = series(answer.rows);
        const metrics = Object.keys(data).sort();
        replace(charts, metrics.length ? metrics.map((metric) => h('section', { class: 'card', 'data-metric': metric },
          h('h2', {}, h('code', {}, metric)),
          Object.entries(data[metric]).sort(([a], [b]) => a.localeCompare(b)).map(([name, points]) => h('figure', { class: 'usage-figure' },
            h('figcaption', {}, `${name}: ${short(points.reduce((sum, p) => sum + (metric === 'db_size_bytes' ? 0 : p.value), 0) || Math.max(...points.map((p) => p.value)))}`),
            barChart(points, { title: `${metric} of ${name}` }))))) :
          h('p', { class: 'muted' }, 'No usage recorded in this range yet.'));
      } catch (error) {
        const target = { portal, from, to }[error.body?.parameter];
        if (target) target.showError(error.message); else status.show(error.message);
      }
    };

    const loadQuotas = async () => {
      try {
        const answer = await api.get('/v1/hub/quotas');
        replace(quotaBox,
          quotaBanners(answer.quotas),
          answer.quotas.length ? h('div', { class: 'table-scroll' }, h('table', {},
            h('thead', {}, h('tr', {}, ['Portal', 'Quota', 'This month', 'Soft', 'Hard', 'State'].map((t) => h('th', { scope: 'col' }, t)))),
            h('tbody', {}, answer.quotas.map((q) => h('tr', { class: `quota-${q.level}` },
              h('th', { scope: 'row' }, q.portal), h('td', {}, h('code', {}, q.quota)), h('td', {}, short(q.total)),
              h('td', {}, q.soft == null ? '—' : short(q.soft)), h('td', {}, q.hard == null ? '—' : short(q.hard)),
              h('td', { class: q.level === 'hard' ? 'state-bad' : q.level === 'soft' ? 'state-warn' : 'state-ok' }, q.level)))))) :
            h('p', { class: 'muted' }, `No quotas apply (license tier ${answer.tier}${answer.metering ? '' : '; metering is off'}).`));
      } catch (error) {
        replace(quotaBox, h('p', { class: 'state-bad' }, error.message));
      }
    };

    const billPortal = field('Portal', { name: 'bill-portal', autocomplete: 'off', required: true });
    const billPeriod = field('Month', { name: 'period', type: 'month', value: month });
    const billStatus = notice();
    const bill = h('div', { 'data-test': 'billing-summary' });
    const showBill = h('button', { type: 'submit', class: 'primary' }, 'Show the bill');
    const billForm = h('form', { class: 'filters', novalidate: true, 'aria-label': 'Billing summary' },
      billPortal.wrapper, billPeriod.wrapper, h('div', { class: 'actions' }, showBill));
    billForm.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(showBill, async () => {
        billStatus.clear();
        [billPortal, billPeriod].forEach((f) => f.clear());
        const query = new URLSearchParams({ portal: billPortal.input.value.trim(), period: billPeriod.input.value });
        try {
          const summary = await api.get(`/v1/hub/billing?${query}`);
          const money = (value) => `${Number(value).toFixed(2)} ${summary.currency}`;
          replace(bill, h('div', { class: 'table-scroll' }, h('table', {},
            h('caption', {}, `${summary.portal}, ${summary.period} (tier ${summary.tier})`),
            h('thead', {}, h('tr', {}, ['Metric', 'Quantity', 'Included', 'Billable', 'Units', 'Unit price', 'Amount'].map((t) => h('th', { scope: 'col' }, t)))),
            h('tbody', {},
              h('tr', {}, h('th', { scope: 'row' }, 'Base price'), h('td', { colspan: 5 }, ''), h('td', {}, money(summary.base_price))),
              summary.lines.map((line) => h('tr', {},
                h('th', { scope: 'row' }, h('code', {}, line.metric)), h('td', {}, short(line.quantity)), h('td', {}, short(line.included)),
                h('td', {}, short(line.billable)), h('td', {}, `${short(line.units)} × ${short(line.unit_size)}`),
                h('td', {}, `${line.unit_price} ${summary.currency}`), h('td', {}, money(line.amount))))),
            h('tfoot', {}, h('tr', {}, h('th', { scope: 'row' }, 'Total'), h('td', { colspan: 5 }, ''), h('td', { 'data-test': 'billing-total' }, money(summary.total)))))));
        } catch (error) {
          const target = { portal: billPortal, period: billPeriod }[error.body?.parameter];
          if (target) target.showError(error.message); else billStatus.show(error.message);
        }
      });
    });

    const apply = h('button', { type: 'submit', class: 'primary' }, 'Show usage');
    const form = h('form', { class: 'filters', novalidate: true, 'aria-label': 'Usage filters' },
      portal.wrapper, from.wrapper, to.wrapper,
      h('div', { class: 'field' }, h('label', { for: 'usage-granularity' }, 'Per'), granularity),
      h('div', { class: 'actions' }, apply));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(apply, load);
    });
    await Promise.all([load(), loadQuotas()]);
    return [
      h('h1', { id: 'page-title' }, 'Usage & billing'),
      h('section', { class: 'card', 'aria-labelledby': 'usage-quotas' }, h('h2', { id: 'usage-quotas' }, 'Quotas this month'), quotaBox),
      form, status.element, charts,
      h('section', { class: 'card', 'aria-labelledby': 'usage-billing' },
        h('h2', { id: 'usage-billing' }, 'Billing summary'),
        h('p', { class: 'muted' }, 'Needs a session at AAL2: the Studio asks for your second factor.'),
        billForm, billStatus.element, bill),
    ];
  },
};
