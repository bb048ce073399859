/**
 * nbserve's JupyterLab extension: a left-sidebar Services panel over the
 * server extension's API (nbserve/api/services), and a status-bar count.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Clipboard, Dialog, MainAreaWidget, showDialog } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IStatusBar } from '@jupyterlab/statusbar';
import { IFrame, LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { ServicesClient } from './api';
import { statusText } from './model';
import { ServicesPanel } from './panel';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
<g class="jp-icon3" fill="#616161"><rect x="3" y="4" width="18" height="5" rx="1"/>
<rect x="3" y="10" width="18" height="5" rx="1"/><rect x="3" y="16" width="18" height="5" rx="1"/></g>
<g fill="#4caf50"><circle cx="6.5" cy="6.5" r="1.2"/><circle cx="6.5" cy="12.5" r="1.2"/>
<circle cx="6.5" cy="18.5" r="1.2"/></g></svg>`;

export const nbserveIcon = new LabIcon({ name: 'nbserve:services', svgstr: ICON_SVG });

function openUrl(app: JupyterFrontEnd, title: string, url: string): void {
  // Same origin as JupyterLab: the proxy asks for the user's Jupyter login (the
  // cookie), and the service's own token is added server-side.
  const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms'] });
  frame.url = url;
  const widget = new MainAreaWidget({ content: frame });
  widget.id = `nbserve-page-${Math.random().toString(36).slice(2)}`;
  widget.title.label = title;
  widget.title.icon = nbserveIcon;
  widget.title.closable = true;
  widget.addClass('jp-nbserve-page');
  app.shell.add(widget, 'main');
  app.shell.activateById(widget.id);
}

function showLogs(app: JupyterFrontEnd, name: string, lines: string[]): void {
  const content = new Widget();
  content.addClass('jp-nbserve-logs');
  const pre = document.createElement('pre');
  pre.textContent = lines.length ? lines.join('\n') : '(no log records yet)';
  content.node.append(pre);
  const widget = new MainAreaWidget({ content });
  widget.id = `nbserve-logs-${Math.random().toString(36).slice(2)}`;
  widget.title.label = `${name} logs`;
  widget.title.icon = nbserveIcon;
  widget.title.closable = true;
  app.shell.add(widget, 'main');
  app.shell.activateById(widget.id);
}

async function confirmStop(name: string): Promise<boolean> {
  const result = await showDialog({
    title: `Stop ${name}?`,
    body: 'In-flight requests finish, on_shutdown runs and the port is freed. The kernel keeps running.',
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
  });
  return result.button.accept;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@nbserve/labextension:plugin',
  description: 'A Services panel listing every live nbserve service, with docs, logs and stop.',
  autoStart: true,
  optional: [ILabShell, IStatusBar],
  activate: (app: JupyterFrontEnd, labShell: ILabShell | null, statusBar: IStatusBar | null) => {
    const panel = new ServicesPanel({
      client: new ServicesClient(),
      origin: window.location.origin,
      jupyterToken: PageConfig.getToken(),
      actions: {
        openUrl: (title, url) => openUrl(app, title, url),
        showLogs: (name, lines) => showLogs(app, name, lines),
        copy: text => Clipboard.copyToSystem(text),
        confirmStop
      }
    });
    panel.title.icon = nbserveIcon;
    app.shell.add(panel, 'left', { rank: 650 });
    panel.startPolling();

    app.commands.addCommand('nbserve:open-services', {
      label: 'Show nbserve Services',
      execute: () => app.shell.activateById(panel.id)
    });

    if (statusBar) {
      const item = new Widget();
      item.addClass('jp-nbserve-status');
      item.node.textContent = statusText([]);
      item.node.title = 'Live nbserve services (click for the Services panel)';
      item.node.addEventListener('click', () => app.shell.activateById(panel.id));
      panel.changed.connect((_, services) => {
        item.node.textContent = statusText(services);
      });
      statusBar.registerStatusItem('@nbserve/labextension:status', {
        item,
        align: 'left',
        rank: 4
      });
    }
    void labShell;
  }
};

export default plugin;
