import type { ServiceInfo } from '../model';

/** A service as the API lists it, with `overrides`. */
export function service(overrides: Partial<ServiceInfo> = {}): ServiceInfo {
  return {
    name: 'Echo',
    state: 'running',
    kernel_id: '1a2b3c4d-0000-1111-2222-333344445555',
    notebook: null,
    pid: 4242,
    mode: 'inline',
    workers: 0,
    routes: ['/shout', '/fail'],
    stats: {
      '/shout': { count: 40, errors: 1, p50_ms: 0.42, p95_ms: 12.6 },
      '/fail': { count: 0, errors: 0, p50_ms: 0, p95_ms: 0 }
    },
    version: 1,
    started: 0,
    token_required: true,
    url: '/user/ada/nbserve/services/Echo/',
    shadowed: false,
    ...overrides
  };
}
