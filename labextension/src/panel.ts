/**
 * The Services panel: every live nbserve service of this Jupyter server, across
 * kernels, refreshed every few seconds while the panel is attached. Plain DOM
 * in a Lumino widget (no React): small, and testable in jsdom.
 */
import { Signal, type ISignal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import type { IServicesClient } from './api';
import { curlLine, owner, routeRows, totalRequests, type ServiceInfo } from './model';

export interface IPanelActions {
  /** Open `url` (the proxy URL of a page) in a main-area tab titled `title`. */
  openUrl(title: string, url: string): void;
  /** Show a service's log lines (a main-area tab). */
  showLogs(name: string, lines: string[]): void;
  /** Put `text` on the clipboard. */
  copy(text: string): void;
  /** Ask before stopping; resolves true to go ahead. */
  confirmStop(name: string): Promise<boolean>;
}

export interface IPanelOptions {
  client: IServicesClient;
  actions: IPanelActions;
  /** The page origin, for absolute URLs in copied text. */
  origin: string;
  /** Jupyter's token, for copied curl lines ('' when the page has none). */
  jupyterToken: string;
  /** Milliseconds between refreshes; 0 turns polling off (tests refresh by hand). */
  pollMs?: number;
}

export class ServicesPanel extends Widget {
  constructor(private readonly options: IPanelOptions) {
    super();
    this.id = 'nbserve-services';
    this.addClass('jp-nbserve-ServicesPanel');
    this.title.caption = 'nbserve services';
    const header = document.createElement('div');
    header.className = 'jp-nbserve-header';
    header.textContent = 'Services';
    this.listNode = document.createElement('ul');
    this.listNode.className = 'jp-nbserve-list';
    this.messageNode = document.createElement('div');
    this.messageNode.className = 'jp-nbserve-message';
    this.node.append(header, this.messageNode, this.listNode);
    this.node.addEventListener('click', event => void this.onClick(event));
  }

  /** Emits the list after every refresh (the status bar item listens). */
  get changed(): ISignal<this, ServiceInfo[]> {
    return this._changed;
  }

  get services(): ServiceInfo[] {
    return this._services;
  }

  /** Fetch the list now and re-render. */
  async refresh(): Promise<void> {
    try {
      this._services = await this.options.client.list();
      this.error = '';
    } catch (reason) {
      this.error = `Could not list services: ${(reason as Error).message ?? reason}`;
    }
    this.render();
    this._changed.emit(this._services);
  }

  startPolling(): void {
    const ms = this.options.pollMs ?? 2000;
    if (ms > 0 && this.timer === undefined) {
      this.timer = window.setInterval(() => void this.refresh(), ms);
    }
    void this.refresh();
  }

  dispose(): void {
    if (this.timer !== undefined) {
      window.clearInterval(this.timer);
      this.timer = undefined;
    }
    super.dispose();
  }

  private render(): void {
    this.messageNode.textContent =
      this.error ||
      (this._services.length
        ? ''
        : 'No services running. Run a %%serve cell in a notebook to start one.');
    this.messageNode.classList.toggle('jp-nbserve-error', Boolean(this.error));
    this.listNode.replaceChildren(...this._services.map(s => this.renderService(s)));
  }

  private renderService(service: ServiceInfo): HTMLLIElement {
    const item = document.createElement('li');
    item.className = 'jp-nbserve-service';
    item.dataset.name = service.name;

    const head = el('div', 'jp-nbserve-service-head');
    const state = el('span', `jp-nbserve-state jp-nbserve-state-${service.state}`, service.state);
    const name = el('span', 'jp-nbserve-name', service.name);
    const mode = el('span', 'jp-nbserve-mode', service.mode);
    head.append(state, name, mode);

    const meta = el(
      'div',
      'jp-nbserve-owner',
      `${owner(service)} · ${plural(totalRequests(service), 'request')}` +
        (service.shadowed ? ' · shadowed by a newer service of this name' : '')
    );

    const table = el('table', 'jp-nbserve-routes');
    const headRow = el('tr');
    const columns: [string, string][] = [
      ['route', 'API route'],
      ['req', 'requests'],
      ['err', 'error rate'],
      ['p50', 'median latency'],
      ['p95', '95th percentile latency']
    ];
    for (const [title, help] of columns) {
      const th = el('th', '', title);
      th.title = help;
      headRow.append(th);
    }
    table.append(headRow);
    for (const row of routeRows(service)) {
      const tr = el('tr', 'jp-nbserve-route');
      tr.dataset.route = row.route;
      for (const value of [row.route, String(row.requests), row.errorRate, row.p50, row.p95]) {
        tr.append(el('td', '', value));
      }
      table.append(tr);
    }

    const actions = el('div', 'jp-nbserve-actions');
    const buttons: [string, string][] = [
      ['docs', 'Docs & tester'],
      ['openapi', 'OpenAPI'],
      ['copy-url', 'Copy URL'],
      ['copy-curl', 'Copy curl'],
      ['logs', 'Logs'],
      ['stop', 'Stop']
    ];
    for (const [action, label] of buttons) {
      const button = el('button', 'jp-nbserve-action', label) as HTMLButtonElement;
      button.dataset.action = action;
      button.dataset.name = service.name;
      button.title = `${label}: ${service.name}`;
      actions.append(button);
    }
    item.append(head, meta, table, actions);
    return item;
  }

  private async onClick(event: MouseEvent): Promise<void> {
    const button = (event.target as HTMLElement).closest('button');
    const action = button?.dataset.action;
    const service = this._services.find(s => s.name === button?.dataset.name);
    if (!action || !service) {
      return;
    }
    await this.run(action, service);
  }

  /** Perform one of the buttons' actions (public for the tests and for commands). */
  async run(action: string, service: ServiceInfo): Promise<void> {
    const { actions, client, origin, jupyterToken } = this.options;
    switch (action) {
      case 'docs':
        actions.openUrl(service.name, service.url);
        break;
      case 'openapi':
        actions.openUrl(`${service.name} OpenAPI`, `${service.url}docs.json`);
        break;
      case 'copy-url':
        actions.copy(new URL(service.url, origin).href);
        break;
      case 'copy-curl':
        actions.copy(curlLine(service, service.routes[0] ?? '/', origin, jupyterToken));
        break;
      case 'logs':
        actions.showLogs(service.name, await client.logs(service.name));
        break;
      case 'stop':
        if (await actions.confirmStop(service.name)) {
          let failure = '';
          try {
            await client.stop(service.name);
          } catch (reason) {
            failure = `Could not stop ${service.name}: ${(reason as Error).message}`;
          }
          await this.refresh();
          if (failure) {
            this.error = failure;
            this.render();
          }
        }
        break;
    }
  }

  private readonly listNode: HTMLUListElement;
  private readonly messageNode: HTMLDivElement;
  private _services: ServiceInfo[] = [];
  private _changed = new Signal<this, ServiceInfo[]>(this);
  private error = '';
  private timer: number | undefined;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function el(tag: string, className = '', text?: string): HTMLElement {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}
