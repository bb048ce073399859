/**
 * The server extension's API, reached only through `ServerConnection.makeRequest`
 * (which adds Jupyter's token and XSRF header).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { ServiceInfo, ServicesAnswer } from './model';

/** What the panel needs from the server; tests give the panel a fake one. */
export interface IServicesClient {
  list(): Promise<ServiceInfo[]>;
  logs(name: string, lines?: number): Promise<string[]>;
  stop(name: string): Promise<void>;
}

export class ServicesClient implements IServicesClient {
  constructor(
    private readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  async list(): Promise<ServiceInfo[]> {
    const answer = (await this.request('services')) as ServicesAnswer;
    return answer.services;
  }

  async logs(name: string, lines = 200): Promise<string[]> {
    const answer = (await this.request(
      `services/${encodeURIComponent(name)}/logs?n=${lines}`
    )) as { lines: string[] };
    return answer.lines;
  }

  async stop(name: string): Promise<void> {
    await this.request(`services/${encodeURIComponent(name)}/stop`, { method: 'POST' });
  }

  private async request(path: string, init: RequestInit = {}): Promise<unknown> {
    const url = URLExt.join(this.settings.baseUrl, 'nbserve', 'api', path);
    const response = await ServerConnection.makeRequest(url, init, this.settings);
    const text = await response.text();
    const body = text ? JSON.parse(text) : {};
    if (!response.ok) {
      throw new ServerConnection.ResponseError(response, body.message ?? text);
    }
    return body;
  }
}
