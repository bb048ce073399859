/**
 * What the Services panel shows, computed from the server extension's
 * `GET nbserve/api/services` answer. Pure functions, no JupyterLab imports,
 * so they are unit-tested without a browser.
 */

/** Per-route numbers, as the service's own stats report them. */
export interface RouteStats {
  count: number;
  errors: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms?: number;
}

/** One live service, as `GET {base}nbserve/api/services` lists it. */
export interface ServiceInfo {
  name: string;
  state: string;
  kernel_id: string | null;
  notebook: string | null;
  pid: number | null;
  mode: string;
  workers: number | null;
  routes: string[];
  stats: Record<string, RouteStats>;
  version: number | null;
  started: number | null;
  token_required: boolean;
  /** The proxy URL, absolute path under the server's base URL. */
  url: string;
  shadowed: boolean;
}

export interface ServicesAnswer {
  services: ServiceInfo[];
}

/** One row of the routes table. */
export interface RouteRow {
  route: string;
  requests: number;
  errorRate: string;
  p50: string;
  p95: string;
}

/** Milliseconds for people: "–" before the first request, "0.4 ms", "12 ms", "1.2 s". */
export function formatMs(ms: number | undefined, count: number): string {
  if (!count || ms === undefined || !Number.isFinite(ms)) {
    return '–';
  }
  if (ms < 1) {
    return `${ms.toFixed(1)} ms`;
  }
  if (ms < 1000) {
    return `${Math.round(ms)} ms`;
  }
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Errors over requests as a percentage: "–" with no requests, "0%", "2.5%". */
export function formatErrorRate(errors: number, count: number): string {
  if (!count) {
    return '–';
  }
  const rate = (100 * errors) / count;
  return rate === 0 || rate >= 10 ? `${Math.round(rate)}%` : `${rate.toFixed(1)}%`;
}

/** The routes table: every declared route, with its numbers where it has some. */
export function routeRows(service: ServiceInfo): RouteRow[] {
  return service.routes.map(route => {
    const s = service.stats[route];
    const count = s?.count ?? 0;
    return {
      route,
      requests: count,
      errorRate: formatErrorRate(s?.errors ?? 0, count),
      p50: formatMs(s?.p50_ms, count),
      p95: formatMs(s?.p95_ms, count)
    };
  });
}

/** Total requests across routes (the panel's one-line summary). */
export function totalRequests(service: ServiceInfo): number {
  return Object.values(service.stats).reduce((n, s) => n + (s.count ?? 0), 0);
}

/** "analysis.ipynb", else "kernel 1a2b3c4d", else "pid 4242": who owns the service. */
export function owner(service: ServiceInfo): string {
  if (service.notebook) {
    return service.notebook;
  }
  if (service.kernel_id) {
    return `kernel ${service.kernel_id.slice(0, 8)}`;
  }
  return service.pid !== null ? `pid ${service.pid}` : 'unknown owner';
}

/** The proxy URL made absolute against the page's origin (for copying). */
export function absoluteUrl(path: string, origin: string): string {
  return new URL(path, origin).href;
}

/** Quote for a POSIX shell: the value inside single quotes. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'"'"'`)}'`;
}

/**
 * A `curl` line calling `route` through the proxy. The Jupyter token (when the
 * page has one) authenticates to Jupyter; the service's own token is added by
 * the proxy, so it never appears here.
 */
export function curlLine(
  service: ServiceInfo,
  route: string,
  origin: string,
  jupyterToken: string
): string {
  const url = absoluteUrl(service.url.replace(/\/$/, '') + route, origin);
  const parts = ['curl', '-X', 'POST', shellQuote(url)];
  if (jupyterToken) {
    parts.push('-H', shellQuote(`Authorization: token ${jupyterToken}`));
  }
  parts.push('-H', shellQuote('Content-Type: application/json'), '-d', shellQuote('{}'));
  return parts.join(' ');
}

/** How many services run (the status bar's number). */
export function runningCount(services: ServiceInfo[]): number {
  return services.filter(s => s.state === 'running').length;
}

/** The status bar text: "nbserve: 2 services". */
export function statusText(services: ServiceInfo[]): string {
  const n = runningCount(services);
  return `nbserve: ${n} service${n === 1 ? '' : 's'}`;
}
