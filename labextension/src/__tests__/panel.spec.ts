import { Widget } from '@lumino/widgets';
import { afterEach, describe, expect, it } from 'vitest';

import type { IServicesClient } from '../api';
import type { ServiceInfo } from '../model';
import { ServicesPanel, type IPanelActions } from '../panel';
import { service } from './fixtures';

/** A client over an in-memory list: stop removes the service, as the real one does. */
class FakeClient implements IServicesClient {
  constructor(public services: ServiceInfo[]) {}
  stopped: string[] = [];
  failList = false;

  async list(): Promise<ServiceInfo[]> {
    if (this.failList) {
      throw new Error('HTTP 403');
    }
    return this.services.map(s => ({ ...s }));
  }

  async logs(name: string): Promise<string[]> {
    return [`${name} started`];
  }

  async stop(name: string): Promise<void> {
    this.stopped.push(name);
    this.services = this.services.filter(s => s.name !== name);
  }
}

function recorder(confirm = true): IPanelActions & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    openUrl: (title, url) => calls.push(['openUrl', title, url]),
    showLogs: (name, lines) => calls.push(['showLogs', name, lines]),
    copy: text => calls.push(['copy', text]),
    confirmStop: async name => {
      calls.push(['confirmStop', name]);
      return confirm;
    }
  };
}

let panel: ServicesPanel | undefined;

function makePanel(client: IServicesClient, actions: IPanelActions): ServicesPanel {
  panel = new ServicesPanel({
    client,
    actions,
    origin: 'http://localhost:8888',
    jupyterToken: 'jt',
    pollMs: 0
  });
  Widget.attach(panel, document.body);
  return panel;
}

afterEach(() => {
  panel?.dispose();
  panel = undefined;
});

function click(root: HTMLElement, name: string, action: string): void {
  const button = root.querySelector<HTMLButtonElement>(
    `button[data-name="${name}"][data-action="${action}"]`
  );
  expect(button).not.toBeNull();
  button!.click();
}

const flush = () => new Promise(resolve => setTimeout(resolve, 0));

describe('ServicesPanel', () => {
  it('lists every service with its owner, mode and routes', async () => {
    const p = makePanel(
      new FakeClient([service(), service({ name: 'Other', notebook: 'b.ipynb', mode: '2 workers' })]),
      recorder()
    );
    await p.refresh();
    const items = [...p.node.querySelectorAll<HTMLElement>('.jp-nbserve-service')];
    expect(items.map(i => i.dataset.name)).toEqual(['Echo', 'Other']);
    expect(items[1].querySelector('.jp-nbserve-mode')!.textContent).toBe('2 workers');
    expect(items[1].querySelector('.jp-nbserve-owner')!.textContent).toContain('b.ipynb');
    const routes = [...items[0].querySelectorAll<HTMLElement>('tr.jp-nbserve-route')];
    expect(routes.map(r => r.dataset.route)).toEqual(['/shout', '/fail']);
    expect([...routes[0].querySelectorAll('td')].map(td => td.textContent)).toEqual([
      '/shout',
      '40',
      '2.5%',
      '0.4 ms',
      '13 ms'
    ]);
  });

  it('says how to start a service when there is none', async () => {
    const p = makePanel(new FakeClient([]), recorder());
    await p.refresh();
    expect(p.node.querySelector('.jp-nbserve-message')!.textContent).toContain('%%serve');
  });

  it('shows why the list failed', async () => {
    const client = new FakeClient([]);
    client.failList = true;
    const p = makePanel(client, recorder());
    await p.refresh();
    const message = p.node.querySelector('.jp-nbserve-message')!;
    expect(message.textContent).toContain('HTTP 403');
    expect(message.classList.contains('jp-nbserve-error')).toBe(true);
  });

  it('opens the docs page and the OpenAPI document through the proxy URL', async () => {
    const actions = recorder();
    const p = makePanel(new FakeClient([service()]), actions);
    await p.refresh();
    click(p.node, 'Echo', 'docs');
    click(p.node, 'Echo', 'openapi');
    await flush();
    expect(actions.calls).toEqual([
      ['openUrl', 'Echo', '/user/ada/nbserve/services/Echo/'],
      ['openUrl', 'Echo OpenAPI', '/user/ada/nbserve/services/Echo/docs.json']
    ]);
  });

  it('copies an absolute URL and a curl line', async () => {
    const actions = recorder();
    const p = makePanel(new FakeClient([service()]), actions);
    await p.refresh();
    click(p.node, 'Echo', 'copy-url');
    click(p.node, 'Echo', 'copy-curl');
    await flush();
    expect(actions.calls[0]).toEqual(['copy', 'http://localhost:8888/user/ada/nbserve/services/Echo/']);
    expect(actions.calls[1][1]).toContain("'http://localhost:8888/user/ada/nbserve/services/Echo/shout'");
  });

  it('shows logs', async () => {
    const actions = recorder();
    const p = makePanel(new FakeClient([service()]), actions);
    await p.refresh();
    click(p.node, 'Echo', 'logs');
    await flush();
    expect(actions.calls).toEqual([['showLogs', 'Echo', ['Echo started']]]);
  });

  it('stops after confirmation, then drops the service and tells listeners', async () => {
    const client = new FakeClient([service(), service({ name: 'Other' })]);
    const actions = recorder(true);
    const p = makePanel(client, actions);
    const seen: number[] = [];
    p.changed.connect((_, services) => seen.push(services.length));
    await p.refresh();
    await p.run('stop', p.services[0]);
    expect(client.stopped).toEqual(['Echo']);
    expect([...p.node.querySelectorAll<HTMLElement>('.jp-nbserve-service')].map(i => i.dataset.name)).toEqual([
      'Other'
    ]);
    expect(seen).toEqual([2, 1]);
  });

  it('does not stop when the user cancels', async () => {
    const client = new FakeClient([service()]);
    const p = makePanel(client, recorder(false));
    await p.refresh();
    await p.run('stop', p.services[0]);
    expect(client.stopped).toEqual([]);
  });
});
