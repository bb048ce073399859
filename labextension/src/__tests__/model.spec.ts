import { describe, expect, it } from 'vitest';

import {
  curlLine,
  formatErrorRate,
  formatMs,
  owner,
  routeRows,
  shellQuote,
  statusText
} from '../model';
import { service } from './fixtures';


describe('numbers for people', () => {
  it('shows a dash before the first request', () => {
    expect(formatMs(0, 0)).toBe('–');
    expect(formatErrorRate(0, 0)).toBe('–');
  });

  it('scales latencies', () => {
    expect(formatMs(0.42, 3)).toBe('0.4 ms');
    expect(formatMs(12.6, 3)).toBe('13 ms');
    expect(formatMs(1530, 3)).toBe('1.5 s');
  });

  it('rounds error rates', () => {
    expect(formatErrorRate(0, 9)).toBe('0%');
    expect(formatErrorRate(1, 40)).toBe('2.5%');
    expect(formatErrorRate(5, 10)).toBe('50%');
  });
});

describe('routeRows', () => {
  it('lists every declared route, numbers where it has some', () => {
    expect(routeRows(service())).toEqual([
      { route: '/shout', requests: 40, errorRate: '2.5%', p50: '0.4 ms', p95: '13 ms' },
      { route: '/fail', requests: 0, errorRate: '–', p50: '–', p95: '–' }
    ]);
  });

  it('copes with a route the stats do not know yet', () => {
    expect(routeRows(service({ stats: {} }))[0].requests).toBe(0);
  });
});

describe('owner', () => {
  it('prefers the notebook, then the kernel, then the pid', () => {
    expect(owner(service({ notebook: 'work/analysis.ipynb' }))).toBe('work/analysis.ipynb');
    expect(owner(service())).toBe('kernel 1a2b3c4d');
    expect(owner(service({ kernel_id: null }))).toBe('pid 4242');
  });
});

describe('curlLine', () => {
  it('calls the route through the proxy with the Jupyter token, never the service token', () => {
    const line = curlLine(service(), '/shout', 'https://hub.example', 'jt0k');
    expect(line).toBe(
      "curl -X POST 'https://hub.example/user/ada/nbserve/services/Echo/shout'" +
        " -H 'Authorization: token jt0k' -H 'Content-Type: application/json' -d '{}'"
    );
  });

  it('leaves the header out when the page has no token (cookie login)', () => {
    expect(curlLine(service(), '/shout', 'http://localhost:8888', '')).not.toContain('Authorization');
  });

  it('quotes for the shell', () => {
    expect(shellQuote("it's")).toBe(`'it'"'"'s'`);
  });
});

describe('statusText', () => {
  it('counts running services', () => {
    expect(statusText([])).toBe('nbserve: 0 services');
    expect(statusText([service()])).toBe('nbserve: 1 service');
    expect(statusText([service(), service({ name: 'B', state: 'unresponsive' })])).toBe(
      'nbserve: 1 service'
    );
  });
});
